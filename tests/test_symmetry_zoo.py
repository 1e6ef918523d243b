"""Alignment on a small trained zoo: UCI breast cancer, 16 ReLU nets 30-16-16-2.

The zoo is trained here (one Adam over an ``(R, P)`` parameter, full batch, from the
reference's prior N(0, 0.1 I)) so the test does not depend on the zoo package.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_breast_cancer

from lightning_wflow.symmetry import (
    align,
    canonical_scale,
    loss_barrier,
    random_pairs,
    select_reference,
)
from lightning_wflow.weights import MLPSpec

SPEC = MLPSpec((30, 16, 16, 2))
N_RUNS = 16


class Zoo:
    def __init__(self) -> None:
        data = load_breast_cancer()
        x = torch.tensor(data.data, dtype=torch.float32)
        self.x = (x - x.mean(0)) / x.std(0)
        self.y = torch.tensor(data.target)
        g = torch.Generator().manual_seed(0)
        theta = (0.1**0.5 * torch.randn(N_RUNS, SPEC.n_params, generator=g)).requires_grad_()
        opt = torch.optim.Adam([theta], lr=3e-3)
        for _ in range(300):
            opt.zero_grad()
            self.loss_fn(theta).sum().backward()
            opt.step()
        self.flat = theta.detach()
        self.losses = self.loss_fn(self.flat).detach()
        self.ref = self.flat[select_reference(self.flat, self.losses)]
        self.pairs = random_pairs(N_RUNS, 60, torch.Generator().manual_seed(1))

    def logits(self, flat: torch.Tensor) -> torch.Tensor:
        return SPEC.forward(flat, self.x)

    def loss_fn(self, flat: torch.Tensor) -> torch.Tensor:
        """Full-batch mean cross-entropy per network, ``(B,)``."""
        logits = self.logits(flat)
        y = self.y.expand(flat.shape[0], -1)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
        return ce.mean(1)

    def pair_barrier(self, flat: torch.Tensor) -> float:
        return loss_barrier(SPEC, flat[self.pairs[:, 0]], flat[self.pairs[:, 1]], self.loss_fn).mean

    def ref_barrier(self, flat: torch.Tensor) -> torch.Tensor:
        return loss_barrier(SPEC, flat, self.ref.expand_as(flat), self.loss_fn).barrier


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo()


@pytest.fixture(scope="module")
def weight_matched(zoo: Zoo):
    return align(SPEC, zoo.flat, zoo.ref, "weight_matching")


def test_zoo_is_trained(zoo: Zoo) -> None:
    accuracy = (zoo.logits(zoo.flat).argmax(-1) == zoo.y).float().mean(1)
    assert accuracy.min() > 0.95
    assert zoo.pair_barrier(zoo.flat) > 0.05  # unaligned independent runs: a real barrier


@pytest.mark.parametrize("method", ["weight_matching", "sinkhorn_l2"])
def test_alignment_lowers_midpoint_barrier(zoo: Zoo, weight_matched, method: str) -> None:
    res = weight_matched if method == "weight_matching" else align(
        SPEC, zoo.flat, zoo.ref, method, steps=100
    )
    before, after = zoo.pair_barrier(zoo.flat), zoo.pair_barrier(res.aligned)
    assert after < 0.5 * before, (before, after)
    assert zoo.ref_barrier(res.aligned).mean() < 0.5 * zoo.ref_barrier(zoo.flat).mean()
    # Same functions: the losses do not move.
    assert torch.allclose(zoo.loss_fn(res.aligned), zoo.losses, atol=1e-5)
    assert torch.all(res.distance_after <= res.distance_before + 1e-4)


def test_sinkhorn_mid_no_worse_than_weight_matching(zoo: Zoo, weight_matched) -> None:
    # Started at weight matching and keeping the best hard permutation of the (deterministic,
    # full-batch) midpoint loss, every network's barrier to the reference can only go down.
    mid = align(SPEC, zoo.flat, zoo.ref, "sinkhorn_mid", loss_fn=zoo.loss_fn, steps=60,
                init_weight_matching=True)
    wm_ref, mid_ref = zoo.ref_barrier(weight_matched.aligned), zoo.ref_barrier(mid.aligned)
    assert torch.all(mid_ref <= wm_ref + 1e-6), (mid_ref - wm_ref).max()
    assert mid_ref.mean() < wm_ref.mean()
    # Pena et al.'s plain start (identity): the mean pairwise barrier is no larger either.
    plain = align(SPEC, zoo.flat, zoo.ref, "sinkhorn_mid", loss_fn=zoo.loss_fn, steps=100)
    assert zoo.pair_barrier(plain.aligned) <= zoo.pair_barrier(weight_matched.aligned)
    assert torch.allclose(zoo.loss_fn(plain.aligned), zoo.losses, atol=1e-5)


def test_sinkhorn_rnd_lowers_barrier(zoo: Zoo) -> None:
    g = torch.Generator().manual_seed(0)
    res = align(SPEC, zoo.flat, zoo.ref, "sinkhorn_rnd", loss_fn=zoo.loss_fn, steps=60,
                generator=g, chunk_size=8)
    assert res.aligned.shape == zoo.flat.shape and res.perms[0].shape == (N_RUNS, 16)
    assert zoo.pair_barrier(res.aligned) < 0.5 * zoo.pair_barrier(zoo.flat)


def test_canonical_zoo_keeps_predictions_and_reports_both_losses(zoo: Zoo) -> None:
    res = canonical_scale(SPEC, zoo.flat, last_layer_sphere=True)
    original, canonical = zoo.logits(zoo.flat), zoo.logits(res.flat)
    assert torch.equal(original.argmax(-1), canonical.argmax(-1))
    canonical_loss = zoo.loss_fn(res.flat)
    assert not torch.allclose(canonical_loss, zoo.losses, atol=1e-3)  # a temperature change
    # Dividing the canonical logits by the last-layer factor gives back the original loss.
    layers = [list(wb) for wb in SPEC.unflatten(res.flat.clone())]
    c = res.last_layer_factor
    layers[-1] = [layers[-1][0] / c[:, None, None], layers[-1][1] / c[:, None]]
    undone = SPEC.flatten([tuple(wb) for wb in layers])
    assert torch.allclose(zoo.loss_fn(undone), zoo.losses, atol=1e-5)
