"""Dataset readers: one module per layout, registered under the ``evalkit.readers`` entry points.

Each imports only ``evalkit.contract`` and ``evalkit.errors`` (and ``_lines``, this package's helper).
"""
