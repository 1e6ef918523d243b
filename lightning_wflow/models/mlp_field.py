"""A plain MLP velocity field over the flattened weights (a baseline, not equivariant).

DeepWeightFlow (2026) trains an MLP over flattened, re-basined weights and reports samples
of a 784-32-32-10 MNIST network at the trained networks' accuracy. Once the zoo is aligned
to one reference, every training network lives in the same neuron order, so a field that
is *not* equivariant can read off each neuron's identity from its position: at ``t = 0``
its x1-prediction is the aligned zoo's mean, not the symmetrised average of all hidden
neurons that an exactly equivariant field must output from exchangeable noise. The price:
it accepts only the architecture it was trained on (no sampling of wider networks) and its
output depends on the reference's neuron order.

Written by hand (a few Linear layers): no library in the design card has a time-conditioned
residual MLP over a vector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..weights import MLPSpec
from .relational_transformer import EDGE_SCALINGS, time_features

__all__ = ["MLPVelocityField"]


class _Block(nn.Module):
    """Pre-norm residual block ``h + W2 GELU(W1 LN(h) + W_t tf)`` (time enters every block)."""

    def __init__(self, d: int, d_time: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d)
        self.time = nn.Linear(d_time, d, bias=False)
        self.fc2 = nn.Linear(d, d)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, tf: Tensor) -> Tensor:
        return h + self.drop(self.fc2(self.act(self.fc1(self.norm(h)) + self.time(tf))))


class MLPVelocityField(nn.Module):
    """x1-prediction ``(x_t, t) -> x1_hat`` by a residual MLP over the flat ``(B, P)`` weights.

    Args:
        layer_sizes: the one architecture this field accepts, e.g. ``[784, 10, 10]``.
        d_model: hidden width.
        n_layers: residual blocks.
        n_time_freq: Fourier frequencies of the time features (as the relational transformer).
        dropout: dropout inside the blocks.
        edge_scaling: ``none`` or ``fan_in``: every weight of a Linear layer with ``fan_in``
            inputs enters multiplied by ``sqrt(fan_in)`` and leaves divided by it, so that
            canonical weights (per-coordinate RMS ``1/sqrt(fan_in)``) are read and written at
            unit scale; biases are unscaled. The scale comes from the layer sizes only.
    """

    def __init__(
        self,
        layer_sizes: list[int],
        d_model: int = 512,
        n_layers: int = 3,
        n_time_freq: int = 4,
        dropout: float = 0.0,
        edge_scaling: str = "none",
    ):
        super().__init__()
        if edge_scaling not in EDGE_SCALINGS:
            raise ValueError(f"edge_scaling must be one of {list(EDGE_SCALINGS)}, got {edge_scaling!r}")
        if d_model < 1 or n_layers < 1:
            raise ValueError(f"d_model and n_layers must be >= 1, got {d_model}, {n_layers}")
        self.spec = MLPSpec(tuple(layer_sizes))
        self.n_time_freq = n_time_freq
        self.edge_scaling = edge_scaling
        scale = torch.ones(self.spec.n_params)
        if edge_scaling == "fan_in":
            for s in self.spec.slices:
                scale[s.weight] = float(s.n_in) ** 0.5
        self.register_buffer("scale", scale, persistent=False)
        d_time = 1 + 2 * n_time_freq
        self.inp = nn.Linear(self.spec.n_params + d_time, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, d_time, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, self.spec.n_params)

    def accepts(self, layer_sizes: tuple[int, ...]) -> tuple[bool, str]:
        """Whether ``forward`` can run on these layer sizes, and why not."""
        if tuple(layer_sizes) != self.spec.layer_sizes:
            return False, (
                f"the mlp velocity field reads the flat weights of {list(self.spec.layer_sizes)} only "
                f"(model.net.kind: relational_transformer samples other widths), got {list(layer_sizes)}"
            )
        return True, ""

    def forward(self, x: Tensor, t: Tensor, layer_sizes: tuple[int, ...] | None = None) -> Tensor:
        """Predict ``x1`` from ``x_t``.

        Args:
            x: ``(B, P)`` flat weights ``x_t``.
            t: ``(B,)`` or scalar time in ``[0, 1]``.
            layer_sizes: must be the training architecture (or ``None``).

        Returns:
            ``(B, P)`` predicted ``x1``.
        """
        if layer_sizes is not None:
            ok, why = self.accepts(tuple(layer_sizes))
            if not ok:
                raise ValueError(f"the velocity field cannot process layer sizes {list(layer_sizes)}: {why}")
        self.spec.check_flat(x)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        tf = time_features(t, self.n_time_freq)
        scale = self.scale.to(x.dtype)
        h = self.inp(torch.cat([x * scale, tf], dim=-1))
        for block in self.blocks:
            h = block(h, tf)
        return self.out(self.norm(h)) / scale
