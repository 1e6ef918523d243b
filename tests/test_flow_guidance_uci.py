"""Loss guidance on the UCI breast-cancer task: guided samples have lower test loss."""

from __future__ import annotations

import pytest
import torch

from lightning_wflow.flow import GaussianPrior, LossGuidance, SpherePrior, integrate
from lightning_wflow.geometry import make_geometry
from lightning_wflow.weights import MLPSpec

tasks = pytest.importorskip("lightning_wflow.tasks")


@pytest.mark.parametrize("name", ["euclidean", "geometric"])
def test_uci_guided_samples_have_lower_task_loss(name):
    task = tasks.get_task("uci_breast_cancer")
    spec = MLPSpec((30, 16, 16, 2))
    geo = make_geometry(name, spec, last_layer_sphere=True)
    prior = GaussianPrior(spec, std=0.1) if name == "euclidean" else SpherePrior(spec, bias_std=0.1)
    x0 = prior.sample(16, torch.Generator().manual_seed(0))
    # a trivial velocity field that keeps the prior: the guidance alone must lower the loss
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    loss_fn = task.loss_fn(spec, split="train", batch_size=64, generator=torch.Generator().manual_seed(1))
    guidance = LossGuidance(loss_fn, scale=1.0, t_start=0.0, t_end=1.0)
    with torch.no_grad():
        plain = integrate(zero, x0, geo, steps=40)
        guided = integrate(zero, x0, geo, steps=40, guidance=guidance)
    assert geo.check(guided)[0]
    before = task.evaluate(spec, plain, split="test")
    after = task.evaluate(spec, guided, split="test")
    assert (after.loss < before.loss).all()
    assert float(after.accuracy.mean()) > float(before.accuracy.mean())
