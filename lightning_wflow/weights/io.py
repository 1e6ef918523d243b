"""Sampled networks as files: one safetensors file holds N networks of one architecture.

For every Linear layer ``k`` of the equivalent ``nn.Sequential`` the file has tensors
``"{k}.weight"`` of shape ``(N, out, in)`` and ``"{k}.bias"`` of shape ``(N, out)``, so
sample ``i``'s state_dict is ``{name: t[i]}``. The safetensors metadata holds one JSON
document under the key ``"lightning_wflow"`` with ``format``, ``layer_sizes``,
``activation`` and whatever the writer adds (task, geometry, sampling settings, task
metadata needed to evaluate the networks without this package).

Reading never unpickles anything: safetensors stores raw tensors and a JSON header.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from ..utils import atomic_path
from .mlp import MLPSpec

__all__ = ["SAMPLE_FORMAT", "SampleFile", "load_samples", "load_sequentials", "save_samples"]

SAMPLE_FORMAT = "lightning_wflow.samples/1"
_META_KEY = "lightning_wflow"


@dataclass
class SampleFile:
    """A loaded sample file: architecture, ``(N, P)`` flat weights and metadata."""

    spec: MLPSpec
    flat: Tensor
    metadata: dict = field(default_factory=dict)

    def state_dicts(self) -> list[dict[str, Tensor]]:
        tensors = self.spec.to_state_dicts(self.flat)
        return [{k: v[i] for k, v in tensors.items()} for i in range(self.flat.shape[0])]

    def sequentials(self) -> list[nn.Sequential]:
        return self.spec.to_sequentials(self.flat)


def save_samples(path: str | os.PathLike, spec: MLPSpec, flat: Tensor, metadata: dict | None = None) -> Path:
    """Write ``flat (N, P)`` as a sample file, atomically. Returns the path."""
    spec.check_flat(flat)
    if not torch.isfinite(flat).all():
        bad = (~torch.isfinite(flat)).any(1).nonzero().flatten().tolist()
        raise FloatingPointError(f"refusing to write non-finite samples (rows {bad[:10]})")
    meta = dict(metadata or {})
    meta.update(format=SAMPLE_FORMAT, **spec.to_dict(), n_samples=int(flat.shape[0]))
    tensors = {k: v.detach().cpu().contiguous() for k, v in spec.to_state_dicts(flat).items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return path


def load_samples(path: str | os.PathLike) -> SampleFile:
    """Read a file written by :func:`save_samples`; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{str(path)!r} is not a sample file (not a readable safetensors file: {err})") from err
    if raw is None:
        raise ValueError(f"{str(path)!r} is not a sample file: safetensors metadata has no {_META_KEY!r} entry")
    meta = json.loads(raw)
    if meta.get("format") != SAMPLE_FORMAT:
        raise ValueError(
            f"{str(path)!r} has sample format {meta.get('format')!r}; this version reads {SAMPLE_FORMAT!r}"
        )
    spec = MLPSpec.from_dict(meta)
    return SampleFile(spec=spec, flat=spec.from_state_dicts(tensors), metadata=meta)


def load_sequentials(path: str | os.PathLike) -> list[nn.Sequential]:
    """Load a sample file into a list of ``nn.Sequential`` (one per sampled network)."""
    return load_samples(path).sequentials()
