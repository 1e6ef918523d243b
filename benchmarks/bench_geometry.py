"""Cost of the Geometric flow's extra math, and of exact vs Hutchinson likelihoods.

1. One flow-matching "math" pass (interpolate + target velocity + x1-prediction loss, forward
   and backward through the loss) on the 30-16-16-2 layout at batch 32, Euclidean vs Normalized
   vs Geometric, and, when the relational transformer is importable, one full training step
   (path + model forward + loss + backward + Adam) per geometry.
2. ``log_likelihood`` on P = 802 parameters with a small MLP velocity field
   (P + 1 -> hidden -> P), exact divergence (P vector-Jacobian products per evaluation, vmapped
   in chunks) vs Hutchinson (1 probe), same solver and steps.

Usage: python benchmarks/bench_geometry.py [--repeats 20] [--device cpu] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_wflow.flow import (
    BetaTimeSampler,
    GaussianPrior,
    SpherePrior,
    log_likelihood,
    sample_path,
)
from lightning_wflow.geometry import make_geometry
from lightning_wflow.weights import MLPSpec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _data(name: str, spec: MLPSpec, batch: int, device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(0)
    prior = GaussianPrior(spec) if name == "euclidean" else SpherePrior(spec, bias_std=0.3)
    x0 = prior.sample(batch, g).to(device)
    x1 = prior.sample(batch, g).to(device)
    t = BetaTimeSampler().sample(batch, g).to(device)
    return prior, x0, x1, t


def bench_path_math(repeats: int, device: torch.device) -> None:
    spec = MLPSpec((30, 16, 16, 2))
    print(f"== flow-matching math, {list(spec.layer_sizes)} (P = {spec.n_params}), batch 32 ==")
    base = None
    for name in ("euclidean", "normalized", "geometric"):
        geo = make_geometry(name, spec, True)
        _, x0, x1, t = _data(name, spec, 32, device)
        pred = (x1 + 0.05 * torch.randn_like(x1)).requires_grad_(True)

        def step():
            ps = sample_path(geo, x0, x1, t)
            loss = geo.loss(pred + 0.0 * ps.x_t, x1).mean() + 0.0 * ps.u_t.sum()
            loss.backward()

        sec = _time(step, repeats, device)
        base = sec if base is None else base
        print(f"  {name:10s} {sec * 1e3:8.3f} ms   x{sec / base:5.2f} vs euclidean")


def bench_training_step(repeats: int, device: torch.device) -> None:
    try:
        from lightning_wflow.models import RelationalTransformer
    except ImportError:
        print("== training step: lightning_wflow.models not importable, skipped ==")
        return
    spec = MLPSpec((30, 16, 16, 2))
    print("== training step with RelationalTransformer(d_model=32, 5 layers), batch 32 ==")
    base = None
    for name in ("euclidean", "normalized", "geometric"):
        torch.manual_seed(0)
        geo = make_geometry(name, spec, True)
        model = RelationalTransformer(list(spec.layer_sizes)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        _, x0, x1, t = _data(name, spec, 32, device)

        def step():
            ps = sample_path(geo, x0, x1, t)
            loss = geo.loss(model(ps.x_t, t), x1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        sec = _time(step, max(3, repeats // 4), device)
        base = sec if base is None else base
        print(f"  {name:10s} {sec * 1e3:8.1f} ms   x{sec / base:5.2f} vs euclidean")


class MLPVelocity(torch.nn.Module):
    """``v(x, t) = MLP([x, t])``: a small velocity field for the likelihood benchmark."""

    def __init__(self, p: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(p + 1, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, p)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, t[:, None]], dim=-1))


def bench_likelihood(steps: int, device: torch.device, batch: int) -> None:
    spec = MLPSpec((30, 16, 16, 2))
    print(f"== log_likelihood, P = {spec.n_params}, MLP velocity (hidden 256), batch {batch}, "
          f"{steps} Euler steps ==")
    for name in ("euclidean", "geometric"):
        geo = make_geometry(name, spec, True)
        prior, _, x1, _ = _data(name, spec, batch, device)
        torch.manual_seed(0)
        field = MLPVelocity(spec.n_params).to(device)
        res = {}
        for est in ("exact", "hutchinson"):
            g = torch.Generator(device=device).manual_seed(0)

            def run():
                return log_likelihood(field, x1, geo, prior, steps=steps, estimator=est, generator=g)

            sec = _time(run, 2, device)
            res[est] = (sec, run())
        ratio = res["exact"][0] / res["hutchinson"][0]
        diff = (res["exact"][1].log_prob - res["hutchinson"][1].log_prob).abs().mean()
        print(f"  {name:10s} exact {res['exact'][0]:7.3f} s   hutchinson {res['hutchinson'][0]:7.3f} s   "
              f"exact/hutchinson x{ratio:6.1f}   mean |diff| {float(diff):.3f} nats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="solver steps of the likelihood")
    parser.add_argument("--batch", type=int, default=8, help="batch of the likelihood")
    parser.add_argument("--skip-model", action="store_true", help="skip the transformer step")
    args = parser.parse_args()
    device = torch.device(args.device)
    bench_path_math(args.repeats, device)
    if not args.skip_model:
        bench_training_step(args.repeats, device)
    bench_likelihood(args.steps, device, args.batch)


if __name__ == "__main__":
    main()
