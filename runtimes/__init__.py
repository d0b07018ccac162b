"""Runtime adapters: one module per runtime (see ``evalkit.runtime`` for the contract)."""
