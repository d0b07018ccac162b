"""Metrics: one module per metric, registered under the ``evalkit.metrics`` entry points.

Each imports only ``evalkit.contract`` and ``evalkit.errors``; the run's ``metrics`` list picks them.
"""
