"""The permutation symmetry of an MLP, acting on a batch of flat weight vectors.

Convention: ``perms[k]`` is a ``(B, h_k)`` LongTensor for hidden layer ``k`` (the output of
Linear layer ``k``), and after the action neuron ``i`` of that layer is the old neuron
``perms[k][b, i]``. With the permutation matrix ``P[i, perm[i]] = 1`` this is (eq. 4.1)

    W_k <- P_k W_k P_{k-1}^T,    b_k <- P_k b_k,

with ``P_{-1}`` and ``P_{L-1}`` the identity (inputs and outputs are never permuted), so
the permuted network computes the same function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..weights import MLPSpec

__all__ = [
    "apply_permutations",
    "apply_permutation_matrices",
    "compose_permutations",
    "identity_permutations",
    "invert_permutations",
    "permutation_matrices",
    "random_permutations",
]


def _check_perms(spec: MLPSpec, perms: list[Tensor], batch: int) -> list[Tensor]:
    """Validate ``perms`` against ``spec`` and broadcast unbatched ``(h,)`` ones to ``(B, h)``."""
    hidden = spec.hidden_sizes
    if len(perms) != len(hidden):
        raise ValueError(
            f"perms must hold one permutation per hidden layer ({len(hidden)} for layer sizes "
            f"{list(spec.layer_sizes)}), got {len(perms)}"
        )
    out = []
    for k, (p, h) in enumerate(zip(perms, hidden)):
        if p.dtype != torch.long:
            raise ValueError(f"perms[{k}] must be a LongTensor, got dtype {p.dtype}")
        if p.ndim == 1:
            p = p.unsqueeze(0).expand(batch, -1)
        if p.shape != (batch, h):
            raise ValueError(
                f"perms[{k}] must have shape ({batch}, {h}) or ({h},), got {tuple(p.shape)}"
            )
        out.append(p)
    return out


def apply_permutations(spec: MLPSpec, flat: Tensor, perms: list[Tensor]) -> Tensor:
    """Permute the hidden neurons of ``B`` networks at once (one gather per tensor).

    Args:
        spec: the architecture.
        flat: ``(B, P)`` flat parameters.
        perms: one ``(B, h_k)`` (or shared ``(h_k,)``) LongTensor per hidden layer; neuron
            ``i`` of the result is neuron ``perms[k][b, i]`` of the input.

    Returns:
        ``(B, P)`` permuted parameters computing the same functions as ``flat``.
    """
    layers = spec.unflatten(flat)
    perms = _check_perms(spec, perms, flat.shape[0])
    out: list[tuple[Tensor, Tensor]] = []
    prev: Tensor | None = None
    for k, (w, b) in enumerate(layers):
        if k < spec.n_layers - 1:
            p = perms[k].to(flat.device)
            w = w.gather(1, p.unsqueeze(2).expand(-1, -1, w.shape[2]))
            b = b.gather(1, p)
        if prev is not None:
            w = w.gather(2, prev.unsqueeze(1).expand(-1, w.shape[1], -1))
        prev = p if k < spec.n_layers - 1 else None
        out.append((w, b))
    return spec.flatten(out)


def apply_permutation_matrices(spec: MLPSpec, flat: Tensor, mats: list[Tensor]) -> Tensor:
    """The same action with (possibly soft) matrices: ``W_k <- P_k W_k P_{k-1}^T``.

    Differentiable in ``mats``; used by Sinkhorn re-basin where ``P_k`` is doubly
    stochastic. For one-hot matrices from :func:`permutation_matrices` it equals
    :func:`apply_permutations`.

    Args:
        spec: the architecture.
        flat: ``(B, P)`` or ``(1, P)`` flat parameters (broadcast against ``mats``).
        mats: one ``(B, h_k, h_k)`` matrix per hidden layer.

    Returns:
        ``(B, P)`` parameters.
    """
    hidden = spec.hidden_sizes
    if len(mats) != len(hidden):
        raise ValueError(
            f"mats must hold one matrix per hidden layer ({len(hidden)}), got {len(mats)}"
        )
    batch = mats[0].shape[0] if mats else flat.shape[0]
    layers = spec.unflatten(flat)
    out: list[tuple[Tensor, Tensor]] = []
    for k, (w, b) in enumerate(layers):
        w = w.expand(batch, -1, -1)
        b = b.expand(batch, -1)
        if k < spec.n_layers - 1:
            w = torch.bmm(mats[k], w)
            b = torch.bmm(mats[k], b.unsqueeze(2)).squeeze(2)
        if k > 0:
            w = torch.bmm(w, mats[k - 1].transpose(1, 2))
        out.append((w, b))
    return spec.flatten(out)


def permutation_matrices(perms: list[Tensor], dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """Index permutations ``(B, h)`` -> one-hot ``(B, h, h)``, ``P[b, i, perm[b, i]] = 1``."""
    mats = []
    for p in perms:
        m = torch.zeros(*p.shape, p.shape[-1], dtype=dtype, device=p.device)
        mats.append(m.scatter_(-1, p.unsqueeze(-1), 1.0))
    return mats


def identity_permutations(
    spec: MLPSpec, batch: int, device: torch.device | str | None = None
) -> list[Tensor]:
    """The identity permutation of every hidden layer, ``(batch, h_k)`` each."""
    return [
        torch.arange(h, device=device).unsqueeze(0).expand(batch, -1).clone()
        for h in spec.hidden_sizes
    ]


def random_permutations(
    spec: MLPSpec,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Uniformly random permutations, ``(batch, h_k)`` per hidden layer (argsort of uniforms).

    Args:
        spec: the architecture.
        batch: number of networks ``B``.
        generator: a CPU generator for reproducibility.
        device: where the result lives.
    """
    return [
        torch.rand(batch, h, generator=generator).argsort(dim=1).to(device)
        for h in spec.hidden_sizes
    ]


def invert_permutations(perms: list[Tensor]) -> list[Tensor]:
    """Inverse permutations: ``apply(apply(x, perms), invert(perms)) == x``."""
    return [p.argsort(dim=-1) for p in perms]


def compose_permutations(first: list[Tensor], second: list[Tensor]) -> list[Tensor]:
    """The permutation equal to applying ``first`` and then ``second``.

    After ``first``, neuron ``i`` is old neuron ``first[i]``; after ``second`` it is
    ``first[second[i]]``.
    """
    return [f.gather(-1, s) for f, s in zip(first, second)]
