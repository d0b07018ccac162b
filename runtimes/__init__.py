"""Runtime plug-ins: one module per runtime, registered in the ``evalkit.runtimes`` entry points (contract: ``evalkit.contract``)."""
