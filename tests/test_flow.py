"""Flow machinery: time samplers, priors, couplings, paths, solvers, noise, guidance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import torch

from lightning_wflow.flow import (
    EquivariantCoupling,
    BetaTimeSampler,
    GaussianPrior,
    IndependentCoupling,
    LossGuidance,
    NoiseConfig,
    OTCoupling,
    SpherePrior,
    UniformTimeSampler,
    integrate,
    integrate_trajectory,
    make_coupling,
    sample_path,
    x1_prediction_velocity,
)
from lightning_wflow.geometry import make_geometry, sphere
from lightning_wflow.weights import MLPSpec

SPEC = MLPSpec((5, 4, 3, 2))
D64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------- time
def test_time_samplers_moments_range_and_reproducibility():
    n = 200_000
    t = BetaTimeSampler(1, 2).sample(n, _gen(0))
    assert t.min() >= 0 and t.max() < 1
    assert abs(float(t.mean()) - 1 / 3) < 5e-3  # Beta(1,2): mean 1/3, var 1/18
    assert abs(float(t.var()) - 1 / 18) < 3e-3
    t2 = BetaTimeSampler(2.5, 0.7).sample(n, _gen(1), dtype=D64)
    a, b = 2.5, 0.7
    assert abs(float(t2.mean()) - a / (a + b)) < 5e-3
    assert abs(float(t2.var()) - a * b / ((a + b) ** 2 * (a + b + 1))) < 3e-3
    assert torch.equal(BetaTimeSampler().sample(10, _gen(3)), BetaTimeSampler().sample(10, _gen(3)))
    u = UniformTimeSampler().sample(n, _gen(2))
    assert abs(float(u.mean()) - 0.5) < 5e-3
    with pytest.raises(ValueError, match="b must be > 0"):
        BetaTimeSampler(1, 0)


# -------------------------------------------------------------------------------- priors
def test_gaussian_prior_sample_and_log_prob_consistent():
    prior = GaussianPrior(SPEC, mean=0.5, std=0.1)
    x = prior.sample(4000, _gen(0), dtype=D64)
    assert abs(float(x.mean()) - 0.5) < 2e-3 and abs(float(x.std()) - 0.1) < 2e-3
    ref = torch.distributions.Normal(0.5, 0.1).log_prob(x[:5]).sum(-1)
    assert torch.allclose(prior.log_prob(x[:5]), ref)
    with pytest.raises(ValueError, match="std must be > 0"):
        GaussianPrior(SPEC, std=0.0)


@pytest.mark.parametrize("last_layer_sphere", [True, False])
def test_sphere_prior_on_manifold_and_exact_log_density(last_layer_sphere):
    prior = SpherePrior(SPEC, bias_std=0.3, last_layer_sphere=last_layer_sphere, weight_std=0.5)
    geo = make_geometry("geometric", SPEC, last_layer_sphere)
    x = prior.sample(4000, _gen(1), dtype=D64)
    assert geo.check(x) == (True, "")
    # log p = -sum log area + Gaussian on Euclidean coordinates
    log_area = sum(b.n_spheres * sphere.log_area(b.dim, b.radius) for b in geo.layout.blocks)
    bias_idx = torch.cat([torch.arange(s.bias.start, s.bias.stop) for s in SPEC.slices])
    lp = -log_area + torch.distributions.Normal(0, 0.3).log_prob(x[:3, bias_idx]).sum(-1)
    if not last_layer_sphere:
        w = SPEC.slices[-1].weight
        lp = lp + torch.distributions.Normal(0, 0.5).log_prob(x[:3, w]).sum(-1)
        assert abs(float(x[:, w].std()) - 0.5) < 0.02
    assert torch.allclose(prior.log_prob(x[:3]), lp)
    assert abs(float(x[:, bias_idx].std()) - 0.3) < 0.01
    # uniform on a sphere: mean of the first hidden neuron ~ 0, second moment 1/n per coordinate
    first = x[:, SPEC.slices[0].weight][:, :5]
    assert first.mean(0).abs().max() < 0.05 and abs(float((first**2).mean()) - 1 / 5) < 0.01


# ------------------------------------------------------------------------------ couplings
@pytest.mark.parametrize("name", ["euclidean", "geometric"])
def test_ot_coupling_equals_brute_force_and_pot(name):
    geo = make_geometry(name, SPEC, True)
    prior = SpherePrior(SPEC, 0.5) if name == "geometric" else GaussianPrior(SPEC)
    for seed in range(3):
        x0 = prior.sample(6, _gen(seed), dtype=D64)
        x1 = prior.sample(6, _gen(100 + seed), dtype=D64)
        c0, c1 = OTCoupling()(x0, x1, geo)
        assert torch.equal(c1, x1)
        # a permutation of x0: no duplicated pairs
        idx = [int((x0 == row).all(-1).nonzero()) for row in c0]
        assert sorted(idx) == list(range(6))
        cost = geo.cost_matrix(x0, x1)
        got = float(geo.sq_dist(c0, c1).sum())
        brute = min(sum(float(cost[p[j], j]) for j in range(6)) for p in itertools.permutations(range(6)))
        assert got == pytest.approx(brute, rel=1e-9)
        plan = ot.emd(np.full(6, 1 / 6), np.full(6, 1 / 6), cost.numpy())
        assert float((plan * cost.numpy()).sum()) * 6 == pytest.approx(brute, rel=1e-9)
    a, b = IndependentCoupling()(x0, x1, geo)
    assert a is x0 and b is x1


@pytest.mark.parametrize("name", ["euclidean", "geometric"])
def test_equivariant_coupling_permutes_each_data_network_towards_its_prior_draw(name):
    from lightning_wflow.symmetry import apply_permutations, random_permutations

    geo = make_geometry(name, SPEC, True)
    prior = SpherePrior(SPEC, 0.5) if name == "geometric" else GaussianPrior(SPEC)
    x0, x1 = prior.sample(6, _gen(0), dtype=D64), prior.sample(6, _gen(1), dtype=D64)
    c0, c1 = EquivariantCoupling()(x0, x1, geo)
    assert torch.equal(c0, x0)
    # each c1 row computes the same function as its x1 row (a hidden-neuron permutation)
    inputs = torch.randn(1, 7, SPEC.layer_sizes[0], dtype=D64).expand(6, -1, -1)
    torch.testing.assert_close(SPEC.forward(c1, inputs), SPEC.forward(x1, inputs))
    assert geo.check(c1)[0]
    # no farther from its prior draw than before, and strictly closer for some pairs
    before, after = (x1 - x0).pow(2).sum(1), (c1 - x0).pow(2).sum(1)
    assert bool((after <= before + 1e-9).all()) and bool((after < before - 1e-6).any())
    # a data network that is a permuted copy of its prior draw is mapped onto it exactly
    perms = random_permutations(SPEC, 6, _gen(2))
    _, exact = EquivariantCoupling()(x0, apply_permutations(SPEC, x0, perms), geo)
    torch.testing.assert_close(exact, x0)
    assert isinstance(make_coupling("equivariant"), EquivariantCoupling)


def test_coupling_errors():
    geo = make_geometry("euclidean", SPEC, True)
    with pytest.raises(ValueError, match="equal shape"):
        OTCoupling()(torch.zeros(3, SPEC.n_params), torch.zeros(4, SPEC.n_params), geo)
    with pytest.raises(ValueError, match="equal shape"):
        EquivariantCoupling()(torch.zeros(3, SPEC.n_params), torch.zeros(4, SPEC.n_params), geo)
    with pytest.raises(ValueError, match="max_sweeps"):
        EquivariantCoupling(max_sweeps=0)
    with pytest.raises(ValueError, match="coupling must be one of"):
        make_coupling("sinkhorn")


# --------------------------------------------------------------------------------- paths
def test_sample_path_with_sigma_stays_on_manifold():
    geo = make_geometry("geometric", SPEC, True)
    prior = SpherePrior(SPEC, 0.5)
    x0, x1 = prior.sample(8, _gen(0), dtype=D64), prior.sample(8, _gen(1), dtype=D64)
    t = BetaTimeSampler().sample(8, _gen(2), dtype=D64)
    ps = sample_path(geo, x0, x1, t, sigma=1e-2, generator=_gen(3))
    assert geo.check(ps.x_t)[0]
    assert torch.allclose(ps.u_t, geo.target_velocity(x0, x1, ps.x_t, t))
    plain = sample_path(geo, x0, x1, t)
    assert 0 < float((ps.x_t - plain.x_t).abs().max()) < 0.1


# ------------------------------------------------------------------------------- solvers
def _linear_problem():
    g = _gen(7)
    a = 0.5 * torch.randn(SPEC.n_params, SPEC.n_params, generator=g, dtype=D64) / math.sqrt(SPEC.n_params)
    x0 = torch.randn(3, SPEC.n_params, generator=g, dtype=D64)
    exact = x0 @ torch.linalg.matrix_exp(a).T
    return (lambda x, t: x @ a.T), x0, exact


@pytest.mark.parametrize("solver,ratio", [("euler", 2.0), ("midpoint", 4.0), ("rk4", 16.0)])
def test_solver_orders_on_linear_ode(solver, ratio):
    f, x0, exact = _linear_problem()
    geo = make_geometry("euclidean", SPEC, True)
    errs = [float((integrate(f, x0, geo, solver, steps=n) - exact).norm()) for n in (8, 16, 32)]
    r1, r2 = errs[0] / errs[1], errs[1] / errs[2]
    assert ratio * 0.8 < r2 < ratio * 1.2, (errs, r1, r2)


def test_rk4_exact_for_cubic_velocity_and_time_grid():
    geo = make_geometry("euclidean", SPEC, True)

    def v(x, t):  # x(t) = x0 + t + t^2 - 2 t^3 + t^4 ... velocity is cubic in t
        tt = t[:, None]
        return torch.ones_like(x) * (1 + 2 * tt - 6 * tt**2 + 4 * tt**3)

    x0 = torch.randn(2, SPEC.n_params, generator=_gen(0), dtype=D64)
    out = integrate(v, x0, geo, "rk4", steps=3)
    assert torch.allclose(out, x0 + (1 + 1 - 2 + 1), atol=1e-12)
    grid = torch.tensor([0.0, 0.1, 0.45, 1.0], dtype=D64)
    out = integrate(v, x0, geo, "rk4", time_grid=grid)
    assert torch.allclose(out, x0 + 1.0, atol=1e-12)
    traj = integrate_trajectory(v, x0, geo, "rk4", time_grid=grid, record=True)
    s = grid[:, None, None]
    assert torch.allclose(traj.xs, x0 + s + s**2 - 2 * s**3 + s**4, atol=1e-12)


def test_riemannian_solvers_rotation_on_spheres():
    """A rotation field x -> x Omega on every sphere: exact solution x exp(t Omega).

    Orders hold on the curved spheres too (RK4 in normal coordinates: ratio ~16)."""
    geo = make_geometry("geometric", SPEC, True)
    prior = SpherePrior(SPEC, 0.5)
    x0 = prior.sample(3, _gen(0), dtype=D64)
    rots = {}
    for b in geo.layout.blocks:
        m = torch.randn(b.dim, b.dim, generator=_gen(b.layer), dtype=D64)
        rots[b.layer] = 2.0 * (m - m.T)

    def v(x, t):
        return geo.layout.map(lambda b, p: p @ rots[b.layer], lambda p: torch.zeros_like(p), x)

    exact = geo.layout.map(lambda b, p: p @ torch.linalg.matrix_exp(rots[b.layer]), lambda p: p, x0)
    for solver, lo in (("euler", 1.6), ("midpoint", 3.2), ("rk4", 12.0)):
        errs = []
        for n in (16, 32, 64):
            out = integrate(v, x0, geo, solver, steps=n, project_final=False)
            assert geo.check(out)[0]
            errs.append(float((out - exact).norm()))
        assert errs[1] / errs[2] > lo, (solver, errs)


def test_normalized_samples_projected_onto_manifold():
    geo = make_geometry("normalized", SPEC, True)
    x0 = SpherePrior(SPEC, 0.5).sample(4, _gen(0))
    out = integrate(lambda x, t: torch.ones_like(x), x0, geo, steps=4)
    assert geo.check(out) == (True, "")
    raw = integrate(lambda x, t: torch.ones_like(x), x0, geo, steps=4, project_final=False)
    assert torch.allclose(raw, x0 + 1.0, atol=1e-5)


def test_x1_prediction_velocity_reaches_target():
    for name in ("euclidean", "geometric"):
        geo = make_geometry(name, SPEC, True)
        prior = SpherePrior(SPEC, 0.5) if name == "geometric" else GaussianPrior(SPEC)
        x0, x1 = prior.sample(4, _gen(0), dtype=D64), prior.sample(4, _gen(1), dtype=D64)
        vel = x1_prediction_velocity(lambda x, t: x1, geo)
        out = integrate(vel, x0, geo, "euler", steps=20)
        assert (out - x1).abs().max() < 1e-8, name


# ---------------------------------------------------------------------------------- noise
def test_noise_deterministic_window_and_variance():
    geo = make_geometry("euclidean", SPEC, True)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x0 = torch.zeros(2000, SPEC.n_params, dtype=D64)
    assert torch.equal(integrate(zero, x0, geo, steps=10, noise=NoiseConfig(0.0), generator=_gen(0)), x0)
    noise = NoiseConfig(epsilon=0.5, t_start=0.2, t_end=0.6, scaling="sqrt_dt")
    traj = integrate_trajectory(zero, x0, geo, steps=10, noise=noise, generator=_gen(0), record=True)
    moved = (traj.xs != 0).any(-1).any(-1)
    # states at t = 0.0 .. 0.2 untouched; the steps starting at 0.2, 0.3, 0.4, 0.5 add noise
    assert moved.tolist() == [False, False, False] + [True] * 8
    assert torch.equal(traj.xs[6], traj.xs[-1])
    var = float(traj.x.var())
    assert abs(var - 0.25 * 0.4) < 0.01  # epsilon^2 * window length
    # per-step scaling (the reference's): 4 noisy steps of variance epsilon^2 each
    per_step = integrate(zero, x0, geo, steps=10, noise=NoiseConfig(0.5, 0.2, 0.6, scaling="step"), generator=_gen(3))
    assert abs(float(per_step.var()) - 0.25 * 4) < 0.05
    a = integrate(zero, x0[:3], geo, steps=10, noise=noise, generator=_gen(5))
    b = integrate(zero, x0[:3], geo, steps=10, noise=noise, generator=_gen(5))
    assert torch.equal(a, b)


def test_noise_on_spheres_stays_on_manifold():
    geo = make_geometry("geometric", SPEC, True)
    x0 = SpherePrior(SPEC, 0.5).sample(4, _gen(0))
    out = integrate(lambda x, t: torch.zeros_like(x), x0, geo, steps=20, noise=NoiseConfig(0.3), generator=_gen(1), project_final=False)
    assert geo.check(out)[0] and not torch.allclose(out, x0)


# ------------------------------------------------------------------------ validation / NaN
def test_argument_validation_messages():
    geo = make_geometry("euclidean", SPEC, True)
    f = lambda x, t: x  # noqa: E731
    x0 = torch.zeros(2, SPEC.n_params)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        integrate(f, x0, geo, steps=0)
    with pytest.raises(ValueError, match="solver must be one of"):
        integrate(f, x0, geo, solver="heun")
    with pytest.raises(ValueError, match="strictly increasing"):
        integrate(f, x0, geo, time_grid=torch.tensor([0.0, 0.5, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        integrate(f, x0, geo, time_grid=torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match="NoiseConfig.epsilon"):
        NoiseConfig(epsilon=-0.1)
    with pytest.raises(ValueError, match="NoiseConfig.scaling"):
        NoiseConfig(epsilon=0.1, scaling="linear")
    with pytest.raises(ValueError, match="NoiseConfig.t_end"):
        NoiseConfig(epsilon=0.1, t_end=1.5)
    with pytest.raises(ValueError, match="NoiseConfig.t_start"):
        NoiseConfig(epsilon=0.1, t_start=0.8, t_end=0.5)
    with pytest.raises(ValueError, match="LossGuidance.scale"):
        LossGuidance(lambda x: x.sum(-1), scale=-1.0)


def test_nan_raises_with_step_and_time():
    geo = make_geometry("euclidean", SPEC, True)

    def f(x, t):
        return torch.full_like(x, float("nan")) if float(t[0]) >= 0.5 else torch.zeros_like(x)

    with pytest.raises(FloatingPointError, match=r"step 5 of 10, t = 0.5 -> 0.6"):
        integrate(f, torch.zeros(2, SPEC.n_params), geo, steps=10)


# ------------------------------------------------------------------------------- guidance
def test_guidance_descends_quadratic_loss_and_respects_window():
    geo = make_geometry("euclidean", SPEC, True)
    target = torch.linspace(-1, 1, SPEC.n_params, dtype=D64)

    def loss_fn(x):
        return ((x - target) ** 2).sum(-1)

    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x0 = torch.randn(8, SPEC.n_params, generator=_gen(0), dtype=D64)
    plain = integrate(zero, x0, geo, steps=20)
    guided = integrate(zero, x0, geo, steps=20, guidance=LossGuidance(loss_fn, scale=0.5))
    assert (loss_fn(guided) < loss_fn(plain)).all()
    # exact discrete dynamics: x <- x - 0.5 * 2 (x - target) h, 20 steps of h = 0.05
    assert torch.allclose(guided - target, (x0 - target) * (1 - 0.05) ** 20)
    late = integrate(zero, x0, geo, steps=20, guidance=LossGuidance(loss_fn, 0.5, t_start=0.5))
    assert torch.allclose(late - target, (x0 - target) * (1 - 0.05) ** 10)
    assert torch.equal(integrate(zero, x0, geo, steps=20, guidance=LossGuidance(loss_fn, 0.0)), plain)


def test_riemannian_guidance_is_tangent_and_descends():
    geo = make_geometry("geometric", SPEC, True)
    prior = SpherePrior(SPEC, 0.5)
    goal = prior.sample(1, _gen(3), dtype=D64)

    def loss_fn(x):
        return ((x - goal) ** 2).sum(-1)

    x0 = prior.sample(6, _gen(4), dtype=D64)
    g = LossGuidance(loss_fn, 1.0)(x0, 0.0, geo)
    assert torch.allclose(geo.proju(x0, g), g)
    out = integrate(lambda x, t: torch.zeros_like(x), x0, geo, steps=30, guidance=LossGuidance(loss_fn, 1.0))
    assert geo.check(out)[0]
    assert (loss_fn(out) < loss_fn(x0)).all()
