"""Velocity fields over weight space (``nn.Module`` only)."""

from .mlp_field import MLPVelocityField
from .relational_transformer import EDGE_SCALINGS, RelationalTransformer, RTLayer, time_features

#: ``model.net.kind``: the velocity field's architecture
NET_KINDS = ("relational_transformer", "mlp")

__all__ = ["EDGE_SCALINGS", "MLPVelocityField", "NET_KINDS", "RelationalTransformer", "RTLayer", "time_features"]
