"""Weight matching (Ainsworth et al., 2023, Algorithm 1) for MLPs of any depth.

Each network ``theta`` of a batch is permuted towards one reference ``theta_A`` by
maximising ``<theta_A, pi_P(theta)>`` (equivalently minimising ``||theta_A - pi_P(theta)||^2``,
since permutations preserve norms). For hidden layer ``k``, with the other layers'
permutations fixed, the objective is linear in ``P_k``:

    S_k[i, j] = <A_k[i, :], (W_k P_{k-1}^T)[j, :]> + a_k[i] b_k[j]
                + <A_{k+1}[:, i], (P_{k+1} W_{k+1})[:, j]>,

a linear assignment problem solved exactly; coordinate descent over the hidden layers
repeats until a full sweep changes no permutation. Each step can only increase the
objective, so the distance to the reference never grows.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..weights import MLPSpec
from .permutation import (
    _check_perms,
    apply_permutations,
    identity_permutations,
    random_permutations,
)
from .result import AlignmentResult, check_reference, make_result, solve_assignment

__all__ = ["weight_matching", "weight_matching_scores"]

_ORDERS = ("random", "fixed")


def weight_matching_scores(
    spec: MLPSpec, flat: Tensor, reference: Tensor, perms: list[Tensor], layer: int
) -> Tensor:
    """The assignment scores ``S_k`` of hidden layer ``layer`` for all networks at once.

    Args:
        spec: the architecture.
        flat: ``(B, P)`` networks to permute.
        reference: ``(P,)`` reference network, or ``(B, P)``: one reference per network.
        perms: current ``(B, h_j)`` permutations of every hidden layer.
        layer: hidden layer index ``k`` (output of Linear layer ``k``).

    Returns:
        ``(B, h_k, h_k)`` scores; ``S[b, i, j]`` rewards sending neuron ``j`` of network ``b``
        to position ``i`` of the reference.
    """
    n_hidden = len(spec.hidden_sizes)
    # (1, P) broadcasts over the batch; (B, P) pairs network b with reference b
    ref_layers = spec.unflatten(reference.unsqueeze(0) if reference.ndim == 1 else reference)
    layers = spec.unflatten(flat)
    a_w, a_b = ref_layers[layer]
    w, b = layers[layer]
    if layer > 0:  # incoming weights with the previous hidden layer already permuted
        prev = perms[layer - 1]
        w = w.gather(2, prev.unsqueeze(1).expand(-1, w.shape[1], -1))
    score = torch.einsum("bic,bjc->bij", a_w.expand(w.shape[0], -1, -1), w)
    score = score + a_b.unsqueeze(2) * b.unsqueeze(1)
    a_next = ref_layers[layer + 1][0]
    w_next = layers[layer + 1][0]
    if layer + 1 < n_hidden:  # outgoing weights with the next hidden layer already permuted
        nxt = perms[layer + 1]
        w_next = w_next.gather(1, nxt.unsqueeze(2).expand(-1, -1, w_next.shape[2]))
    return score + torch.einsum("bri,brj->bij", a_next.expand(w_next.shape[0], -1, -1), w_next)


def _total(score: Tensor, perm: Tensor) -> Tensor:
    """``(B,)`` objective ``sum_i score[b, i, perm[b, i]]``."""
    return score.gather(2, perm.unsqueeze(2)).squeeze(2).sum(1)


def _descend(
    spec: MLPSpec,
    flat: Tensor,
    ref: Tensor,
    perms: list[Tensor],
    max_sweeps: int,
    order: str,
    generator: torch.Generator,
) -> int:
    """Coordinate descent over the hidden layers, updating ``perms`` in place; returns sweeps."""
    n_hidden, sweeps = len(perms), 0
    while n_hidden > 0 and sweeps < max_sweeps:
        sweeps += 1
        layers = (
            torch.randperm(n_hidden, generator=generator).tolist()
            if order == "random"
            else list(range(n_hidden))
        )
        changed = False
        for k in layers:
            score = weight_matching_scores(spec, flat, ref, perms, k)
            new = solve_assignment(score)
            # Accept only strict improvements so ties cannot make the descent cycle.
            gain = _total(score, new) - _total(score, perms[k])
            tol = 1e-9 * score.abs().flatten(1).amax(1).clamp_min(1.0) * score.shape[1]
            better = gain > tol
            changed = changed or bool(better.any())
            perms[k] = torch.where(better.unsqueeze(1), new, perms[k])
        if not changed:
            break
    return sweeps


def weight_matching(
    spec: MLPSpec,
    flat: Tensor,
    reference: Tensor,
    max_sweeps: int = 100,
    order: str = "random",
    n_restarts: int = 5,
    generator: torch.Generator | None = None,
    init_perms: list[Tensor] | None = None,
) -> AlignmentResult:
    """Align every network of ``flat`` to ``reference`` by weight matching.

    The descent finds a local optimum that depends on the layer order and the start;
    ``n_restarts > 1`` adds descents from random permutations and keeps, per network, the
    one closest to the reference (the first start is always ``init_perms``, so the result
    is never farther from the reference than the start).

    Args:
        spec: the architecture (any depth; a network without hidden layers is returned as is).
        flat: ``(B, P)`` networks.
        reference: ``(P,)`` or ``(1, P)`` reference network, or ``(B, P)`` with ``B > 1``:
            network ``b`` is aligned to reference ``b`` (pairwise alignment, e.g. of data
            networks to prior draws in :class:`~lightning_wflow.flow.EquivariantCoupling`).
        max_sweeps: at most this many sweeps over the hidden layers per descent.
        order: ``"random"`` (a fresh random layer order per sweep, as Ainsworth et al.)
            or ``"fixed"`` (first to last hidden layer).
        n_restarts: number of descents (>= 1).
        generator: CPU generator for the layer orders and restarts; default a generator
            seeded with 0, so results are reproducible.
        init_perms: starting permutations of the first descent (default: identity).

    Returns:
        :class:`AlignmentResult` with ``n_iterations`` the total number of sweeps done.
    """
    start = time.perf_counter()
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {list(_ORDERS)}, got {order!r}")
    if max_sweeps < 1:
        raise ValueError(f"max_sweeps must be >= 1, got {max_sweeps}")
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    paired = reference.ndim == 2 and reference.shape[0] > 1
    if paired:
        spec.check_flat(flat)
        if reference.shape != flat.shape:
            raise ValueError(
                f"per-network references must have the networks' shape {tuple(flat.shape)}, "
                f"got {tuple(reference.shape)}"
            )
        ref = reference.detach().to(device=flat.device, dtype=flat.dtype)
    else:
        ref = check_reference(spec, flat, reference)
    flat = flat.detach()
    batch = flat.shape[0]
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    if init_perms is None:
        best = identity_permutations(spec, batch, flat.device)
    else:
        best = [p.to(flat.device).clone() for p in _check_perms(spec, init_perms, batch)]
    with torch.no_grad():
        sweeps = _descend(spec, flat, ref, best, max_sweeps, order, gen)
        best_dist = (apply_permutations(spec, flat, best) - ref).pow(2).sum(1)
        for _ in range(n_restarts - 1):
            perms = random_permutations(spec, batch, gen, flat.device)
            sweeps += _descend(spec, flat, ref, perms, max_sweeps, order, gen)
            dist = (apply_permutations(spec, flat, perms) - ref).pow(2).sum(1)
            closer = dist < best_dist
            best_dist = torch.where(closer, dist, best_dist)
            best = [torch.where(closer.unsqueeze(1), p, b) for p, b in zip(perms, best)]
    return make_result(
        spec, flat, ref, best, "weight_matching", sweeps, time.perf_counter() - start
    )
