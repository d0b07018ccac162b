"""evalkit's SLURM launcher (``hydra/launcher=slurm`` and ``slurm_cpu``) under the name Hydra requires: it instantiates
plugins only from the ``hydra_plugins`` namespace. The code is ``evalkit.slurm``."""

from importlib.util import find_spec

# Only with evalkit[slurm]: Hydra imports every hydra_plugins module at each start, and would warn of a failed import.
if find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from evalkit import slurm

    class SlurmLauncher(slurm.SlurmLauncher):
        """``evalkit.slurm.SlurmLauncher`` under a name Hydra accepts."""
