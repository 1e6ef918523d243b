"""Build a geometry by name (``model.geometry: euclidean | normalized | geometric``)."""

from __future__ import annotations

from ..weights import MLPSpec
from .base import DEFAULT_MIN_GAP, EuclideanGeometry, Geometry, NormalizedGeometry
from .product import GeometricGeometry

__all__ = ["GEOMETRIES", "make_geometry"]

#: Geometry classes by name.
GEOMETRIES: dict[str, type[Geometry]] = {
    "euclidean": EuclideanGeometry,
    "normalized": NormalizedGeometry,
    "geometric": GeometricGeometry,
}


def make_geometry(
    name: str,
    spec: MLPSpec,
    last_layer_sphere: bool = True,
    min_gap: float = DEFAULT_MIN_GAP,
) -> Geometry:
    """The geometry ``name`` over the flat layout of ``spec``.

    Args:
        name: one of :data:`GEOMETRIES` (``"euclidean"``, ``"normalized"``, ``"geometric"``).
        spec: the MLP architecture.
        last_layer_sphere: whether the last weight matrix is one sphere of radius ``sqrt(C)``
            (classification) rather than Euclidean (regression); ignored by ``"euclidean"``.
        min_gap: lower clamp on ``1 - t`` for x1-prediction velocities.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {sorted(GEOMETRIES)}, got {name!r}")
    return GEOMETRIES[name](spec, last_layer_sphere=last_layer_sphere, min_gap=min_gap)
