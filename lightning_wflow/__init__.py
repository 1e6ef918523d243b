"""lightning_wflow: flow matching over neural-network weights.

Subpackages: ``weights`` (architectures, flat layout, graph view, sample files),
``symmetry`` (alignment, canonicalization, loss barriers), ``geometry`` and ``flow``
(the flow math), ``models`` (velocity field), ``tasks`` and ``zoo`` (base tasks and
weight zoos), ``evaluation`` and ``lit`` (Lightning glue).
"""

__version__ = "0.1.0"
