"""Typed settings that LightningCLI reads from YAML (``model.net.*``, ``model.sampling.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..flow import NOISE_SCALINGS, SOLVERS
from ..models import EDGE_SCALINGS, NET_KINDS

__all__ = ["SamplingConfig", "VelocityNetConfig"]


@dataclass
class VelocityNetConfig:
    """Velocity field (reference: relational transformer, 5 layers, d_model 32, 1 head, GELU).

    ``kind: relational_transformer`` is the reference's graph network, exactly equivariant to
    hidden-neuron permutations and able to sample wider networks; ``kind: mlp`` is a plain
    residual MLP over the flat weights (DeepWeightFlow's baseline, for aligned zoos), where
    ``d_model`` is the hidden width, ``n_layers`` the number of residual blocks and
    ``n_heads`` is unused.
    """

    kind: str = "relational_transformer"
    d_model: int = 32
    n_layers: int = 5
    n_heads: int = 1
    n_time_freq: int = 4
    dropout: float = 0.0
    #: ``none`` | ``fan_in``: weights enter the network times sqrt(fan_in) and leave divided
    #: by it (see :class:`~lightning_wflow.models.RelationalTransformer`)
    edge_scaling: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in NET_KINDS:
            raise ValueError(f"model.net.kind must be one of {list(NET_KINDS)}, got {self.kind!r}")
        if self.edge_scaling not in EDGE_SCALINGS:
            raise ValueError(
                f"model.net.edge_scaling must be one of {list(EDGE_SCALINGS)}, got {self.edge_scaling!r}"
            )
        for name in ("d_model", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.net.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.net.d_model ({self.d_model}) must be divisible by model.net.n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.net.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class SamplingConfig:
    """How networks are drawn from a trained flow (``predict``, callbacks).

    Attributes:
        n_samples: networks to draw.
        batch_size: networks integrated at once.
        steps: integration steps.
        solver: one of ``euler``, ``midpoint``, ``rk4``.
        epsilon: stochastic noise scale (0 = deterministic ODE).
        noise_t_start, noise_t_end: time window in which noise is added.
        noise_scaling: ``step`` (noise of std ``epsilon`` before each Euler step, the
            reference's setting) or ``sqrt_dt`` (``epsilon sqrt(dt)``, independent of the
            number of steps).
        guidance_scale: lambda of loss-gradient guidance (0 = off).
        guidance_batch_size: task training examples per guidance gradient.
        guidance_t_start, guidance_t_end: time window of guidance.
        guidance_task: task whose loss guides sampling (default: the flow's task).
        layer_sizes: architecture to sample (default: the training one); the velocity field
            accepts any widths with the same input size, output size and depth.
        seed: seed of the prior draws and the sampling noise.
    """

    n_samples: int = 100
    batch_size: int = 100
    steps: int = 100
    solver: str = "euler"
    epsilon: float = 0.0
    noise_t_start: float = 0.0
    noise_t_end: float = 1.0
    noise_scaling: str = "step"
    guidance_scale: float = 0.0
    guidance_batch_size: int = 256
    guidance_t_start: float = 0.0
    guidance_t_end: float = 1.0
    guidance_task: str | None = None
    layer_sizes: list[int] | None = field(default=None)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_samples", "batch_size", "steps", "guidance_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampling.{name} must be >= 1, got {getattr(self, name)}")
        if self.solver not in SOLVERS:
            raise ValueError(f"sampling.solver must be one of {list(SOLVERS)}, got {self.solver!r}")
        if self.noise_scaling not in NOISE_SCALINGS:
            raise ValueError(
                f"sampling.noise_scaling must be one of {list(NOISE_SCALINGS)}, got {self.noise_scaling!r}"
            )
        if self.epsilon < 0:
            raise ValueError(f"sampling.epsilon must be >= 0, got {self.epsilon}")
        if self.guidance_scale < 0:
            raise ValueError(f"sampling.guidance_scale must be >= 0, got {self.guidance_scale}")
        for a, b in (("noise_t_start", "noise_t_end"), ("guidance_t_start", "guidance_t_end")):
            lo, hi = getattr(self, a), getattr(self, b)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"sampling.{a} and sampling.{b} must satisfy 0 <= start <= end <= 1, got {lo}, {hi}")

    def replace(self, **changes) -> "SamplingConfig":
        from dataclasses import asdict

        return SamplingConfig(**{**asdict(self), **changes})
