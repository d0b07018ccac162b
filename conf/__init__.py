"""evalkit's Hydra config tree, shipped as package data (``pkg://evalkit.conf``)."""
