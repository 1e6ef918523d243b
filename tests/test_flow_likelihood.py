"""Likelihoods: analytic Gaussian flows (exact and Hutchinson) and Riemannian divergences."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_wflow.flow import GaussianPrior, SpherePrior, divergence, log_likelihood
from lightning_wflow.geometry import make_geometry, sphere
from lightning_wflow.weights import MLPSpec

SPEC = MLPSpec((3, 4, 2))  # P = 26
D64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_gaussian_flow(p: int, seed: int = 0):
    """x_t = M_t x0 + m t with M_t = I + t (S - I), S symmetric positive definite.

    Carries N(0, I) to N(m, S^2); v_t(x) = (S - I) M_t^{-1} (x - m t) + m,
    div v_t = tr((S - I) M_t^{-1}), int_0^1 div = log det S.
    """
    g = _gen(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=D64))
    eig = torch.exp(torch.linspace(-0.7, 0.7, p, dtype=D64))
    s = q @ torch.diag(eig) @ q.T
    m = torch.randn(p, generator=g, dtype=D64)
    eye = torch.eye(p, dtype=D64)

    def velocity(x, t):
        tt = t[0]  # one time per call
        mt = eye + tt * (s - eye)
        return torch.linalg.solve(mt, (x - m * tt).T).T @ (s - eye).T + m

    target = torch.distributions.MultivariateNormal(m, scale_tril=torch.linalg.cholesky(s @ s))
    return velocity, target, s, m


def test_exact_likelihood_matches_analytic_gaussian():
    p = SPEC.n_params
    velocity, target, s, m = _linear_gaussian_flow(p)
    geo = make_geometry("euclidean", SPEC, True)
    x1 = target.sample((6,))
    res = log_likelihood(velocity, x1, geo, GaussianPrior(SPEC), steps=16, solver="rk4")
    expected = target.log_prob(x1)
    assert torch.allclose(res.log_prob, expected, atol=1e-5)
    assert torch.allclose(res.divergence_integral, torch.logdet(s).expand(6), atol=1e-6)
    assert torch.allclose(res.log_prob_per_dim, expected / p, atol=1e-6)
    assert torch.allclose(res.log_prob, res.log_prob_base - res.divergence_integral)
    x0_true = torch.linalg.solve(s, (x1 - m).T).T
    assert torch.allclose(res.x0, x0_true, atol=1e-5)
    e1, e2 = (
        (log_likelihood(velocity, x1, geo, GaussianPrior(SPEC), steps=n, solver="euler").log_prob - expected).abs().max()
        for n in (20, 40)
    )
    assert e2 < 0.2 and 1.6 < e1 / e2 < 2.4  # first order


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_likelihood_matches_within_standard_errors(probe):
    velocity, target, s, m = _linear_gaussian_flow(SPEC.n_params, seed=1)
    geo = make_geometry("euclidean", SPEC, True)
    x1 = target.sample((64,))
    res = log_likelihood(
        velocity, x1, geo, GaussianPrior(SPEC), steps=8, solver="rk4",
        estimator="hutchinson", n_probes=2, probe=probe, generator=_gen(3),
    )
    err = res.log_prob - target.log_prob(x1)
    se = float(err.std()) / math.sqrt(len(err))
    assert float(err.std()) > 0  # a genuinely stochastic estimate
    assert abs(float(err.mean())) < 4 * se + 1e-3, (float(err.mean()), se)
    assert float(err.std()) < 1.0


def test_divergence_estimators_agree_on_nonlinear_field():
    geo = make_geometry("euclidean", SPEC, True)
    w = torch.randn(SPEC.n_params, SPEC.n_params, generator=_gen(0), dtype=D64) / 5

    def velocity(x, t):
        return torch.tanh(x @ w.T) * (1 + t[:, None])

    x = torch.randn(5, SPEC.n_params, generator=_gen(1), dtype=D64)
    t = torch.full((5,), 0.3, dtype=D64)
    _, exact = divergence(velocity, x, t, geo, chunk_size=7)
    jac = torch.func.vmap(torch.func.jacrev(lambda y, s: velocity(y[None], s[None])[0]))(x, t)
    assert torch.allclose(exact, jac.diagonal(dim1=-2, dim2=-1).sum(-1), atol=1e-10)
    _, hutch = divergence(velocity, x, t, geo, "hutchinson", n_probes=4000, probe="gaussian", generator=_gen(2))
    assert (hutch - exact).abs().max() < 0.15 * exact.abs().max() + 0.2


def test_riemannian_divergence_of_gradient_field_on_spheres():
    """f = proju(x, a) is the gradient of <a, x>: div_S f = -(n - 1) <a, x> / r^2 on S^{n-1}_r.

    The ambient trace of the Jacobian of f differs from it by the normal term (checked too)."""
    geo = make_geometry("geometric", SPEC, True)
    prior = SpherePrior(SPEC, 0.5)
    x = prior.sample(4, _gen(0), dtype=D64)
    a = torch.randn(SPEC.n_params, generator=_gen(1), dtype=D64)
    const = lambda y, t: a.expand_as(y)  # noqa: E731
    t = torch.zeros(4, dtype=D64)
    v, div = divergence(const, x, t, geo)
    assert torch.allclose(v, geo.proju(x, a.expand_as(x)))
    ax = geo.layout.split(a.expand_as(x))
    expected = sum(
        (-(seg.block.dim - 1) * (pa * px).sum(-1) / seg.block.radius**2).sum(-1)
        for pa, px, seg in zip(ax, geo.layout.split(x), geo.layout.segments)
        if seg.block is not None
    )
    assert torch.allclose(div, expected, atol=1e-10)
    # a non-tangent field with the same tangential part has the same Riemannian divergence,
    # while its ambient trace differs by the normal term
    b = torch.randn(SPEC.n_params, generator=_gen(3), dtype=D64)
    on_spheres = geo.layout.map(lambda blk, p: torch.ones_like(p), torch.zeros_like, x[:1])[0]
    normal = lambda y, s: a.expand_as(y) + (y * b).sum(-1, keepdim=True) * y * on_spheres  # noqa: E731
    _, div_normal = divergence(normal, x, t, geo)
    assert torch.allclose(div_normal, expected, atol=1e-10)
    _, ambient = divergence(normal, x, t, make_geometry("euclidean", SPEC, True))
    assert (ambient - div).abs().min() > 1e-3
    _, hutch = divergence(const, x, t, geo, "hutchinson", n_probes=4000, generator=_gen(2))
    assert (hutch - div).abs().max() < 0.1 * div.abs().max() + 0.1


def test_riemannian_likelihood_zero_and_rotation_fields_give_prior_density():
    geo = make_geometry("geometric", SPEC, True)
    prior = SpherePrior(SPEC, bias_std=0.7)
    x1 = prior.sample(5, _gen(0), dtype=D64)
    zero = log_likelihood(lambda y, t: torch.zeros_like(y), x1, geo, prior, steps=2)
    assert torch.allclose(zero.log_prob, prior.log_prob(x1))
    assert zero.dim == SPEC.n_params - geo.layout.n_spheres
    log_area = sum(b.n_spheres * sphere.log_area(b.dim, b.radius) for b in geo.layout.blocks)
    bias = torch.cat([x1[:, s.bias] for s in SPEC.slices], -1)
    assert torch.allclose(zero.log_prob, -log_area + torch.distributions.Normal(0, 0.7).log_prob(bias).sum(-1))
    rots = {}
    for b in geo.layout.blocks:
        mat = torch.randn(b.dim, b.dim, generator=_gen(b.layer + 5), dtype=D64)
        rots[b.layer] = mat - mat.T

    def rotation(y, t):
        return geo.layout.map(lambda b, p: p @ rots[b.layer], lambda p: torch.zeros_like(p), y)

    rot = log_likelihood(rotation, x1, geo, prior, steps=4, solver="rk4")
    assert rot.divergence_integral.abs().max() < 1e-10
    assert torch.allclose(rot.log_prob, prior.log_prob(x1))
    assert geo.check(rot.x0)[0] and not torch.allclose(rot.x0, x1)
    # the Normalized geometry is evaluated on the same manifold
    norm = log_likelihood(rotation, x1, make_geometry("normalized", SPEC, True), prior, steps=4, solver="rk4")
    assert torch.allclose(norm.log_prob, rot.log_prob)


def test_likelihood_validation_and_nan():
    geo = make_geometry("euclidean", SPEC, True)
    x1 = torch.zeros(2, SPEC.n_params, dtype=D64)
    f = lambda y, t: y  # noqa: E731
    with pytest.raises(ValueError, match="estimator must be one of"):
        log_likelihood(f, x1, geo, GaussianPrior(SPEC), estimator="skilling")
    with pytest.raises(ValueError, match="probe must be one of"):
        log_likelihood(f, x1, geo, GaussianPrior(SPEC), estimator="hutchinson", probe="uniform")
    with pytest.raises(ValueError, match="SpherePrior"):
        log_likelihood(f, x1, make_geometry("geometric", SPEC, True), GaussianPrior(SPEC))
    with pytest.raises(ValueError, match="GaussianPrior"):
        log_likelihood(f, x1, geo, SpherePrior(SPEC))

    def bad(y, t):
        return y * float("inf") if float(t[0]) <= 0.5 else y

    with pytest.raises(FloatingPointError, match=r"likelihood at step 2 of 4, t = 0.5 -> 0.25"):
        log_likelihood(bad, x1 + 1, geo, GaussianPrior(SPEC), steps=4)
