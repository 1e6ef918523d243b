"""What a network's parameters are: an MLP description and the flat <-> layers view.

Flat layout (shared by every part of the package): for each Linear layer ``k`` in order,
the weight matrix ``W_k`` of shape ``(out_k, in_k)`` flattened row-major, followed by its
bias ``b_k`` of shape ``(out_k,)``. This is exactly the order of ``nn.Sequential(Linear,
Act, ..., Linear).state_dict()`` flattened, so a flat vector is a state_dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "POSITIVELY_HOMOGENEOUS", "MLPSpec", "LayerSlices"]

#: Activations by name; the functional form is used by the batched forward.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}

#: Activations with sigma(a x) = a sigma(x) for a > 0 (ReLU scaling symmetry).
POSITIVELY_HOMOGENEOUS = frozenset({"relu", "leaky_relu"})


@dataclass(frozen=True)
class LayerSlices:
    """Where layer ``k`` lives in the flat vector: ``weight`` and ``bias`` slices."""

    weight: slice
    bias: slice
    n_out: int
    n_in: int


@dataclass(frozen=True)
class MLPSpec:
    """A fully connected network ``Linear -> act -> ... -> Linear`` (no final activation).

    Args:
        layer_sizes: ``(d_0, d_1, ..., d_L)``: input size, hidden sizes, output size.
        activation: one of :data:`ACTIVATIONS`.
    """

    layer_sizes: tuple[int, ...]
    activation: str = "relu"

    def __post_init__(self) -> None:
        sizes = tuple(self.layer_sizes)
        object.__setattr__(self, "layer_sizes", sizes)
        if len(sizes) < 2:
            raise ValueError(
                f"layer_sizes must list at least two sizes (input and output), got {list(sizes)}"
            )
        bad = [s for s in sizes if not isinstance(s, int) or isinstance(s, bool) or s <= 0]
        if bad:
            raise ValueError(f"layer_sizes must be positive integers, got {list(sizes)} (bad: {bad})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )

    # ------------------------------------------------------------------ layout
    @property
    def n_layers(self) -> int:
        """Number of Linear layers."""
        return len(self.layer_sizes) - 1

    @property
    def n_inputs(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.layer_sizes[1:-1]

    @cached_property
    def slices(self) -> tuple[LayerSlices, ...]:
        """Per-layer weight and bias slices into the flat vector."""
        out, start = [], 0
        for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            w = slice(start, start + n_in * n_out)
            b = slice(w.stop, w.stop + n_out)
            out.append(LayerSlices(w, b, n_out, n_in))
            start = b.stop
        return tuple(out)

    @property
    def n_params(self) -> int:
        return self.slices[-1].bias.stop

    def to_dict(self) -> dict:
        return {"layer_sizes": list(self.layer_sizes), "activation": self.activation}

    @classmethod
    def from_dict(cls, d: dict) -> "MLPSpec":
        return cls(tuple(int(s) for s in d["layer_sizes"]), str(d.get("activation", "relu")))

    # ---------------------------------------------------------- flat <-> layers
    def check_flat(self, flat: Tensor) -> None:
        if flat.ndim != 2 or flat.shape[-1] != self.n_params:
            raise ValueError(
                f"expected flat parameters of shape (B, {self.n_params}) for layer sizes "
                f"{list(self.layer_sizes)}, got {tuple(flat.shape)}"
            )

    def unflatten(self, flat: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``(B, P)`` -> list of ``(W (B, out, in), b (B, out))`` views (no copy)."""
        self.check_flat(flat)
        return [
            (flat[:, s.weight].unflatten(1, (s.n_out, s.n_in)), flat[:, s.bias])
            for s in self.slices
        ]

    def flatten(self, layers: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Inverse of :meth:`unflatten`: per-layer ``(W, b)`` with a batch dim -> ``(B, P)``."""
        if len(layers) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers, got {len(layers)}")
        parts = []
        for (w, b), s in zip(layers, self.slices):
            if w.shape[1:] != (s.n_out, s.n_in) or b.shape[1:] != (s.n_out,):
                raise ValueError(
                    f"layer shapes {tuple(w.shape)}, {tuple(b.shape)} do not match "
                    f"({s.n_out}, {s.n_in}) for layer sizes {list(self.layer_sizes)}"
                )
            parts += [w.flatten(1), b]
        return torch.cat(parts, dim=1)

    # ----------------------------------------------------------------- forward
    def act(self, h: Tensor) -> Tensor:
        if self.activation == "relu":
            return torch.relu(h)
        if self.activation == "leaky_relu":
            return nn.functional.leaky_relu(h)
        if self.activation == "tanh":
            return torch.tanh(h)
        if self.activation == "sigmoid":
            return torch.sigmoid(h)
        return nn.functional.gelu(h)

    def forward(self, flat: Tensor, x: Tensor) -> Tensor:
        """Batched functional forward of ``B`` networks.

        Args:
            flat: ``(B, P)`` parameters.
            x: ``(N, d_0)`` one input batch shared by all networks, or ``(B, N, d_0)``
                one input batch per network.

        Returns:
            ``(B, N, d_L)`` logits; one batched matmul per layer.
        """
        layers = self.unflatten(flat)
        h = x.unsqueeze(0).expand(flat.shape[0], *x.shape) if x.ndim == 2 else x
        for k, (w, b) in enumerate(layers):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if k < self.n_layers - 1:
                h = self.act(h)
        return h

    # ------------------------------------------------------- nn.Sequential view
    def build_sequential(self) -> nn.Sequential:
        mods: list[nn.Module] = []
        for k, s in enumerate(self.slices):
            mods.append(nn.Linear(s.n_in, s.n_out))
            if k < self.n_layers - 1:
                mods.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*mods)

    def linear_names(self) -> list[str]:
        """State-dict prefixes of the Linear layers in the equivalent ``nn.Sequential``."""
        return [str(2 * k) for k in range(self.n_layers)]

    def to_state_dicts(self, flat: Tensor) -> dict[str, Tensor]:
        """``(B, P)`` -> ``{"{k}.weight": (B, out, in), "{k}.bias": (B, out)}``.

        Sample ``i``'s state_dict is ``{name: t[i] for name, t in result.items()}``.
        """
        out = {}
        for name, (w, b) in zip(self.linear_names(), self.unflatten(flat)):
            out[f"{name}.weight"] = w.contiguous()
            out[f"{name}.bias"] = b.contiguous()
        return out

    def from_state_dicts(self, tensors: dict[str, Tensor]) -> Tensor:
        """Inverse of :meth:`to_state_dicts`; also accepts one unbatched state_dict."""
        names = self.linear_names()
        expected = {f"{n}.{p}" for n in names for p in ("weight", "bias")}
        if set(tensors) != expected:
            raise ValueError(
                f"state_dict keys {sorted(tensors)} do not match the architecture "
                f"{list(self.layer_sizes)} (expected {sorted(expected)})"
            )
        batched = tensors[f"{names[0]}.weight"].ndim == 3
        layers = []
        for n in names:
            w, b = tensors[f"{n}.weight"], tensors[f"{n}.bias"]
            layers.append((w, b) if batched else (w.unsqueeze(0), b.unsqueeze(0)))
        return self.flatten(layers)

    def to_sequentials(self, flat: Tensor) -> list[nn.Sequential]:
        """One ``nn.Sequential`` per row of ``flat``."""
        sd = self.to_state_dicts(flat.detach())
        nets = []
        for i in range(flat.shape[0]):
            net = self.build_sequential().to(flat.dtype)
            net.load_state_dict({k: v[i] for k, v in sd.items()})
            nets.append(net)
        return nets

    def from_sequential(self, net: nn.Sequential) -> Tensor:
        """``nn.Sequential`` -> ``(1, P)``."""
        return self.from_state_dicts({k: v.detach() for k, v in net.state_dict().items()})
