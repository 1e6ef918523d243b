"""Velocity fields over weight space (``nn.Module`` only)."""

from .relational_transformer import RelationalTransformer, RTLayer, time_features

__all__ = ["RelationalTransformer", "RTLayer", "time_features"]
