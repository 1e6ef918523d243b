"""Geometries of weight space: Euclidean, Normalized and Geometric (product of spheres).

Sphere math lives in :mod:`.sphere` as plain functions vectorised over ``(..., n)``; the flat
layout of spheres and Euclidean parts in :mod:`.layout`; the geometry classes are thin wrappers.
"""

from . import sphere
from .base import DEFAULT_MIN_GAP, EuclideanGeometry, Geometry, NormalizedGeometry
from .factory import GEOMETRIES, make_geometry
from .layout import ProductLayout, Segment, SphereBlock
from .product import GeometricGeometry

__all__ = [
    "DEFAULT_MIN_GAP",
    "GEOMETRIES",
    "EuclideanGeometry",
    "GeometricGeometry",
    "Geometry",
    "NormalizedGeometry",
    "ProductLayout",
    "Segment",
    "SphereBlock",
    "make_geometry",
    "sphere",
]
