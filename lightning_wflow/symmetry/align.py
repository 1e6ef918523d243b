"""One entry point for aligning a zoo to a reference, and the choice of the reference."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..weights import MLPSpec
from .permutation import identity_permutations
from .result import AlignmentResult, check_reference, make_result
from .sinkhorn import sinkhorn_rebasin
from .weight_matching import weight_matching

__all__ = ["METHODS", "align", "select_reference"]

#: Alignment methods accepted by :func:`align`.
METHODS = ("none", "weight_matching", "sinkhorn_l2", "sinkhorn_mid", "sinkhorn_rnd")

_DATA_METHODS = ("sinkhorn_mid", "sinkhorn_rnd")


def _check_opts(fn: Callable[..., Any], opts: dict[str, Any], method: str) -> None:
    fixed = {"spec", "flat", "reference", "objective", "loss_fn"}
    allowed = sorted(set(inspect.signature(fn).parameters) - fixed)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"unknown options {unknown} for method {method!r}; allowed: {allowed}")


def align(
    spec: MLPSpec,
    flat: Tensor,
    reference: Tensor,
    method: str = "weight_matching",
    loss_fn: Callable[[Tensor], Tensor] | None = None,
    reference_spec: MLPSpec | None = None,
    chunk_size: int | None = None,
    **opts: Any,
) -> AlignmentResult:
    """Permute every network of a zoo towards one reference network.

    Args:
        spec: the zoo's architecture.
        flat: ``(B, P)`` networks.
        reference: ``(P,)`` or ``(1, P)`` reference (e.g. ``flat_final[select_reference(...)]``).
        method: one of :data:`METHODS`.
        loss_fn: ``flat (B, P) -> (B,)`` differentiable task loss; required by
            ``"sinkhorn_mid"`` and ``"sinkhorn_rnd"``.
        reference_spec: the reference's architecture, if known; refused when it differs.
        chunk_size: align at most this many networks at once (bounds the memory of
            Sinkhorn re-basin on large zoos); ``None`` aligns all together.
        **opts: options of :func:`weight_matching` or :func:`sinkhorn_rebasin`.

    Returns:
        :class:`AlignmentResult`.
    """
    if method not in METHODS:
        raise ValueError(f"alignment method must be one of {list(METHODS)}, got {method!r}")
    if method in _DATA_METHODS and loss_fn is None:
        raise ValueError(f"alignment method {method!r} needs loss_fn (a task loss), got None")
    ref = check_reference(spec, flat, reference, reference_spec)
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")
        if chunk_size < flat.shape[0]:
            parts = [
                align(spec, chunk, ref, method, loss_fn, **opts)
                for chunk in flat.split(chunk_size)
            ]
            return AlignmentResult(
                aligned=torch.cat([r.aligned for r in parts]),
                perms=[torch.cat(ps) for ps in zip(*(r.perms for r in parts))],
                method=method,
                distance_before=torch.cat([r.distance_before for r in parts]),
                distance_after=torch.cat([r.distance_after for r in parts]),
                n_iterations=max(r.n_iterations for r in parts),
                seconds=sum(r.seconds for r in parts),
            )
    if method == "none":
        if opts:
            raise ValueError(f"alignment method 'none' takes no options, got {sorted(opts)}")
        start = time.perf_counter()
        perms = identity_permutations(spec, flat.shape[0], flat.device)
        return make_result(spec, flat, ref, perms, "none", 0, time.perf_counter() - start)
    if method == "weight_matching":
        _check_opts(weight_matching, opts, method)
        return weight_matching(spec, flat, ref, **opts)
    _check_opts(sinkhorn_rebasin, opts, method)
    objective = method.removeprefix("sinkhorn_")
    return sinkhorn_rebasin(spec, flat, ref, objective=objective, loss_fn=loss_fn, **opts)


def select_reference(flat_final: Tensor, losses: Tensor) -> int:
    """Index of the best run: its final checkpoint is the reference.

    Args:
        flat_final: ``(R, P)`` final checkpoints of the runs.
        losses: ``(R,)`` their losses (e.g. training or validation loss); NaN never wins.

    Returns:
        ``argmin`` of ``losses``, an ``int``.
    """
    if flat_final.ndim != 2 or losses.shape != (flat_final.shape[0],):
        raise ValueError(
            f"expected flat_final (R, P) and losses (R,), got {tuple(flat_final.shape)} and "
            f"{tuple(losses.shape)}"
        )
    finite = torch.nan_to_num(losses.detach().double(), nan=float("inf"))
    if not torch.isfinite(finite).any():
        raise ValueError("losses has no finite value; cannot pick a reference")
    return int(finite.argmin())
