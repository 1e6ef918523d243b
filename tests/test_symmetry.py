"""Permutations, assignment, Sinkhorn, weight matching, alignment API, canonicalization, barriers.

Math property tests run in float64 against known answers: invariance of the computed
function, brute-force assignment, planted permutations, closed-form barriers of a quadratic.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_wflow.symmetry import (
    METHODS,
    align,
    apply_permutation_matrices,
    apply_permutations,
    canonical_scale,
    canonicalize,
    compose_permutations,
    identity_permutations,
    invert_permutations,
    is_canonical,
    loss_barrier,
    permutation_matrices,
    random_pairs,
    random_permutations,
    select_reference,
    sinkhorn,
    sinkhorn_rebasin,
    solve_assignment,
    weight_matching,
)
from lightning_wflow.weights import MLPSpec

SPECS = [MLPSpec((5, 8, 6, 3)), MLPSpec((4, 7, 7, 5, 2)), MLPSpec((3, 6, 2))]


def _nets(spec: MLPSpec, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, spec.n_params, generator=g, dtype=torch.float64)


def _inputs(spec: MLPSpec, n: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, spec.n_inputs, generator=g, dtype=torch.float64)


def _rescale_neurons(spec: MLPSpec, flat: torch.Tensor, seed: int) -> torch.Tensor:
    """Apply random positive per-neuron factors a: incoming * a, outgoing / a (same function)."""
    g = torch.Generator().manual_seed(seed)
    layers = [list(wb) for wb in spec.unflatten(flat.clone())]
    for k, h in enumerate(spec.hidden_sizes):
        a = torch.exp(torch.randn(flat.shape[0], h, generator=g, dtype=flat.dtype))
        layers[k][0] = layers[k][0] * a.unsqueeze(2)
        layers[k][1] = layers[k][1] * a
        layers[k + 1][0] = layers[k + 1][0] / a.unsqueeze(1)
    return spec.flatten([tuple(wb) for wb in layers])


# ----------------------------------------------------------------------- permutations
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(map(str, s.layer_sizes)))
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_permuted_network_computes_same_function(spec: MLPSpec, activation: str) -> None:
    spec = MLPSpec(spec.layer_sizes, activation)
    flat = _nets(spec, 4)
    perms = random_permutations(spec, 4, torch.Generator().manual_seed(3))
    permuted = apply_permutations(spec, flat, perms)
    x = _inputs(spec)
    assert not torch.allclose(permuted, flat)
    diff = (spec.forward(permuted, x) - spec.forward(flat, x)).abs().max()
    assert diff < 1e-5, diff


def test_permutation_group_operations() -> None:
    spec = SPECS[1]
    flat = _nets(spec, 5)
    g = torch.Generator().manual_seed(0)
    p, q = random_permutations(spec, 5, g), random_permutations(spec, 5, g)
    for perm in p:
        assert torch.equal(perm.sort(dim=1).values, torch.arange(perm.shape[1]).expand_as(perm))
    back = apply_permutations(spec, apply_permutations(spec, flat, p), invert_permutations(p))
    assert torch.equal(back, flat)
    two_steps = apply_permutations(spec, apply_permutations(spec, flat, p), q)
    assert torch.equal(apply_permutations(spec, flat, compose_permutations(p, q)), two_steps)
    ident = identity_permutations(spec, 5)
    assert torch.equal(apply_permutations(spec, flat, ident), flat)
    shared = [perm[0] for perm in p]  # (h,) broadcasts over the batch
    expected = apply_permutations(spec, flat, [s.expand(5, -1) for s in shared])
    assert torch.equal(apply_permutations(spec, flat, shared), expected)


def test_permutation_matrices_match_gather() -> None:
    spec = SPECS[0]
    flat = _nets(spec, 3)
    perms = random_permutations(spec, 3, torch.Generator().manual_seed(5))
    mats = permutation_matrices(perms, torch.float64)
    assert torch.allclose(
        apply_permutation_matrices(spec, flat, mats), apply_permutations(spec, flat, perms)
    )


def test_permutation_bad_input() -> None:
    spec = SPECS[0]
    flat = _nets(spec, 2)
    perms = random_permutations(spec, 2)
    with pytest.raises(ValueError, match="one permutation per hidden layer"):
        apply_permutations(spec, flat, perms[:1])
    with pytest.raises(ValueError, match=r"perms\[1\] must have shape \(2, 6\)"):
        apply_permutations(spec, flat, [perms[0], perms[1][:, :3]])
    with pytest.raises(ValueError, match="LongTensor"):
        apply_permutations(spec, flat, [perms[0].float(), perms[1]])


# ------------------------------------------------------------------ assignment, Sinkhorn
def test_solve_assignment_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    score = torch.randn(4, 5, 5, generator=g, dtype=torch.float64)
    perm = solve_assignment(score)
    for b in range(4):
        best = max(
            itertools.permutations(range(5)),
            key=lambda p: sum(float(score[b, i, p[i]]) for i in range(5)),
        )
        assert perm[b].tolist() == list(best)


def test_sinkhorn_is_doubly_stochastic_and_sharpens() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    s = sinkhorn(logits, tau=1.0, n_iter=200)
    assert torch.allclose(s.sum(-1), torch.ones(3, 6, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(s.sum(-2), torch.ones(3, 6, dtype=torch.float64), atol=1e-8)
    cold = sinkhorn(logits, tau=0.01, n_iter=500)  # tau -> 0: the exact assignment
    assert torch.equal(cold.argmax(-1), solve_assignment(logits))
    assert cold.amax(-1).min() > 0.9


# --------------------------------------------------------------- planted permutations
def _planted(spec: MLPSpec, n: int):
    ref = _nets(spec, 1, seed=11)[0]
    perms = random_permutations(spec, n, torch.Generator().manual_seed(12))
    flat = apply_permutations(spec, ref.expand(n, -1), perms)
    return ref, flat, perms


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: "-".join(map(str, s.layer_sizes)))
def test_weight_matching_recovers_planted_permutation(spec: MLPSpec) -> None:
    ref, flat, perms = _planted(spec, 6)
    res = weight_matching(spec, flat, ref)
    assert res.method == "weight_matching"
    assert torch.allclose(res.aligned, ref.expand_as(flat), atol=1e-12)
    for got, planted in zip(res.perms, invert_permutations(perms)):
        assert torch.equal(got, planted)
    assert res.distance_after.max() < 1e-12 < res.distance_before.min()


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: "-".join(map(str, s.layer_sizes)))
def test_weight_matching_with_one_reference_per_network(spec: MLPSpec) -> None:
    # network b is a permutation of reference b: each is recovered from its own reference
    refs = _nets(spec, 5, seed=21)
    perms = random_permutations(spec, 5, torch.Generator().manual_seed(22))
    flat = apply_permutations(spec, refs, perms)
    res = weight_matching(spec, flat, refs)
    assert torch.allclose(res.aligned, refs, atol=1e-12)
    assert res.distance_after.max() < 1e-12 < res.distance_before.min()
    # and a shared reference still aligns all of them to that one
    shared = weight_matching(spec, flat, refs[0])
    assert torch.allclose(shared.aligned[0], refs[0], atol=1e-12)
    with pytest.raises(ValueError, match="per-network references"):
        weight_matching(spec, flat, refs[:3])


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: "-".join(map(str, s.layer_sizes)))
def test_sinkhorn_l2_recovers_planted_permutation(spec: MLPSpec) -> None:
    ref, flat, perms = _planted(spec, 6)
    res = sinkhorn_rebasin(spec, flat, ref, objective="l2", steps=60)
    assert res.method == "sinkhorn_l2"
    assert torch.allclose(res.aligned, ref.expand_as(flat), atol=1e-12)
    for got, planted in zip(res.perms, invert_permutations(perms)):
        assert torch.equal(got, planted)


@pytest.mark.parametrize(
    "opts", [{"straight_through": True}, {"keep_best": False}, {"init_weight_matching": True}]
)
def test_sinkhorn_variants_recover_planted_permutation(opts: dict) -> None:
    spec = SPECS[0]
    ref, flat, perms = _planted(spec, 4)
    res = sinkhorn_rebasin(spec, flat, ref, steps=40, **opts)
    assert torch.allclose(res.aligned, ref.expand_as(flat), atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sinkhorn_runs_on_cuda() -> None:
    spec = SPECS[0]
    ref, flat, _ = _planted(spec, 4)
    res = sinkhorn_rebasin(spec, flat.cuda(), ref.cuda(), steps=40)
    assert res.aligned.is_cuda and res.perms[0].is_cuda
    assert torch.allclose(res.aligned.cpu(), ref.expand_as(flat), atol=1e-12)


@pytest.mark.parametrize("method", ["weight_matching", "sinkhorn_l2"])
def test_alignment_never_increases_distance(method: str) -> None:
    spec = SPECS[1]
    flat, ref = _nets(spec, 8, seed=2), _nets(spec, 1, seed=3)[0]
    opts = {"steps": 60} if method.startswith("sinkhorn") else {}
    res = align(spec, flat, ref, method, **opts)
    assert torch.all(res.distance_after <= res.distance_before + 1e-12)
    assert res.distance_after.mean() < res.distance_before.mean()
    assert torch.allclose(res.distance_after, (res.aligned - ref).norm(dim=1))
    assert torch.equal(res.aligned, apply_permutations(spec, flat, res.perms))
    x = _inputs(spec)
    assert (spec.forward(res.aligned, x) - spec.forward(flat, x)).abs().max() < 1e-10


def test_alignment_follows_input_device_and_dtype() -> None:
    spec = SPECS[0]
    ref, flat, _ = _planted(spec, 3)
    res = sinkhorn_rebasin(spec, flat.float(), ref.float(), steps=5)
    assert res.aligned.dtype == torch.float32 and res.perms[0].device == flat.device


# ------------------------------------------------------------------------- align API
def test_align_none_and_errors() -> None:
    spec = SPECS[0]
    flat, ref = _nets(spec, 3), _nets(spec, 1)[0]
    res = align(spec, flat, ref, "none")
    assert torch.equal(res.aligned, flat) and res.n_iterations == 0
    assert torch.equal(res.distance_before, res.distance_after)
    with pytest.raises(ValueError, match="must be one of .*'weight_matching'.*'sinkhorn_rnd'"):
        align(spec, flat, ref, "hungarian")
    for method in ("sinkhorn_mid", "sinkhorn_rnd"):
        with pytest.raises(ValueError, match=f"{method}.*needs loss_fn"):
            align(spec, flat, ref, method)
    with pytest.raises(ValueError, match=r"shape \(50,\).*\[5, 8, 6, 3\] has 123 parameters"):
        align(spec, flat, torch.zeros(50, dtype=torch.float64))
    other = MLPSpec((5, 8, 6, 3), "tanh")
    match = r"reference architecture \[5, 8, 6, 3\] \(tanh\).*zoo's architecture .*\(relu\)"
    with pytest.raises(ValueError, match=match):
        align(spec, flat, ref, reference_spec=other)
    with pytest.raises(ValueError, match=r"unknown options \['stepz'\].*allowed"):
        align(spec, flat, ref, "sinkhorn_l2", stepz=3)
    with pytest.raises(ValueError, match="objective must be one of"):
        sinkhorn_rebasin(spec, flat, ref, objective="mean")


def test_select_reference() -> None:
    flat = torch.zeros(4, 3)
    losses = torch.tensor([0.3, float("nan"), 0.1, 0.2])
    assert select_reference(flat, losses) == 2
    with pytest.raises(ValueError, match=r"losses \(R,\)"):
        select_reference(flat, torch.zeros(3))


# ------------------------------------------------------------------- canonicalization
CANON_SPECS = [MLPSpec((5, 8, 6, 3)), MLPSpec((4, 7, 7, 5, 2), "leaky_relu")]


@pytest.mark.parametrize("spec", CANON_SPECS, ids=lambda s: s.activation)
def test_canonical_network_computes_same_function(spec: MLPSpec) -> None:
    flat, x = _nets(spec, 6), _inputs(spec)
    hidden_only = canonicalize(spec, flat, last_layer_sphere=False)
    assert (spec.forward(hidden_only, x) - spec.forward(flat, x)).abs().max() < 1e-5
    res = canonical_scale(spec, flat, last_layer_sphere=True)
    logits, canon = spec.forward(flat, x), spec.forward(res.flat, x)
    assert torch.equal(canon.argmax(-1), logits.argmax(-1))
    assert torch.allclose(canon, res.last_layer_factor[:, None, None] * logits, atol=1e-10)
    assert is_canonical(spec, res.flat) == (True, "")
    w_last = spec.unflatten(res.flat)[-1][0]
    target = torch.full((6,), math.sqrt(spec.n_outputs), dtype=torch.float64)
    assert torch.allclose(w_last.flatten(1).norm(dim=1), target)


@pytest.mark.parametrize("spec", CANON_SPECS, ids=lambda s: s.activation)
def test_canonicalization_idempotent_and_invariant(spec: MLPSpec) -> None:
    flat = _nets(spec, 6)
    canon = canonicalize(spec, flat)
    assert torch.allclose(canonicalize(spec, canon), canon, atol=1e-12)
    rescaled = _rescale_neurons(spec, flat, seed=4)
    assert not torch.allclose(rescaled, flat)
    layers = [list(wb) for wb in spec.unflatten(rescaled.clone())]
    layers[-1] = [layers[-1][0] * 3.0, layers[-1][1] * 3.0]  # a positive output scale too
    rescaled = spec.flatten([tuple(wb) for wb in layers])
    assert torch.allclose(canonicalize(spec, rescaled), canon, atol=1e-12)


def test_canonicalization_guards_zero_neurons() -> None:
    spec = CANON_SPECS[0]
    flat = _nets(spec, 2)
    w0 = spec.slices[0].weight
    flat[0, w0.start : w0.start + spec.n_inputs] = 0.0  # neuron 0 of layer 1 has no input
    res = canonical_scale(spec, flat)
    assert torch.isfinite(res.flat).all()
    assert res.neuron_scales[0][0, 0] == 1.0
    assert is_canonical(spec, res.flat)[0]
    x = _inputs(spec)
    assert torch.equal(spec.forward(res.flat, x).argmax(-1), spec.forward(flat, x).argmax(-1))


def test_is_canonical_reports_reason() -> None:
    spec = CANON_SPECS[0]
    ok, reason = is_canonical(spec, 3.0 * _nets(spec, 2))
    assert not ok and "hidden layer 0 neuron" in reason and "expected 1" in reason
    hidden = canonicalize(spec, _nets(spec, 2), last_layer_sphere=False)
    ok, reason = is_canonical(spec, hidden)
    assert not ok and "last layer" in reason and "sqrt(3)" in reason
    assert is_canonical(spec, hidden, last_layer_sphere=False) == (True, "")


@pytest.mark.parametrize(
    ("activation", "symmetry"),
    [
        ("tanh", "sign flip"),
        ("sigmoid", r"sigmoid\(-x\) = 1 - sigmoid\(x\)"),
        ("gelu", "no exact scaling"),
    ],
)
def test_canonicalization_refuses_other_activations(activation: str, symmetry: str) -> None:
    spec = MLPSpec((5, 8, 3), activation)
    with pytest.raises(ValueError, match=f"activation='{activation}'.*{symmetry}"):
        canonicalize(spec, _nets(spec, 1))
    with pytest.raises(ValueError, match=symmetry):
        is_canonical(spec, _nets(spec, 1))


# ---------------------------------------------------------------------------- barriers
def test_loss_barrier_of_quadratic_matches_closed_form() -> None:
    # L(theta) = ||theta||^2 along a -> b exceeds the chord by -t (1 - t) ||a - b||^2.
    spec = SPECS[0]
    a, b = _nets(spec, 4, seed=0), _nets(spec, 4, seed=1)
    sq = (a - b).pow(2).sum(1)
    res = loss_barrier(spec, a, b, lambda f: f.pow(2).sum(1))
    assert torch.allclose(res.barrier, -0.25 * sq)
    assert torch.allclose(res.loss_a, a.pow(2).sum(1))
    assert torch.allclose(res.loss_b, b.pow(2).sum(1))
    assert res.curve.shape == (4, 3)
    assert torch.allclose(res.t, torch.tensor([0, 0.5, 1.0], dtype=torch.float64))
    res5 = loss_barrier(spec, a, b, lambda f: f.pow(2).sum(1), n_points=5)
    assert res5.curve.shape == (4, 5)
    assert torch.allclose(res5.barrier, -0.1875 * sq)  # max over t = 1/4, 1/2, 3/4
    neg = loss_barrier(spec, a, b, lambda f: -f.pow(2).sum(1), n_points=5)
    assert torch.allclose(neg.barrier, 0.25 * sq)  # concave: the peak is the midpoint
    assert neg.mean == pytest.approx(float(0.25 * sq.mean()))
    assert neg.std == pytest.approx(float((0.25 * sq).std()))
    with pytest.raises(ValueError, match="n_points must be >= 3"):
        loss_barrier(spec, a, b, lambda f: f.sum(1), n_points=2)


def test_random_pairs() -> None:
    pairs = random_pairs(10, 45, torch.Generator().manual_seed(0))
    assert pairs.shape == (45, 2) and bool((pairs[:, 0] < pairs[:, 1]).all())
    assert len({tuple(p) for p in pairs.tolist()}) == 45
    with pytest.raises(ValueError, match="at most|between 1 and"):
        random_pairs(10, 46)


def test_methods_listed() -> None:
    assert METHODS == ("none", "weight_matching", "sinkhorn_l2", "sinkhorn_mid", "sinkhorn_rnd")
