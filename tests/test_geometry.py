"""Geometry: sphere kernels against geoopt, geodesic paths, velocities, losses, costs, checks."""

from __future__ import annotations

import math

import geoopt
import pytest
import torch

from lightning_wflow.geometry import (
    GEOMETRIES,
    EuclideanGeometry,
    GeometricGeometry,
    NormalizedGeometry,
    make_geometry,
    sphere,
)
from lightning_wflow.weights import MLPSpec

SPEC = MLPSpec((5, 4, 3, 2))
D64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _points(geo, n, seed=0, dtype=D64):
    return geo.projx(torch.randn(n, geo.n_params, generator=_gen(seed), dtype=dtype))


# ----------------------------------------------------------------------------- factory / layout
def test_make_geometry_names_and_unknown():
    for name, cls in GEOMETRIES.items():
        assert isinstance(make_geometry(name, SPEC, True), cls)
    with pytest.raises(ValueError, match="euclidean.*geometric.*normalized|'euclidean'"):
        make_geometry("hyperbolic", SPEC, True)


def test_layout_blocks_from_layer_sizes():
    spec = MLPSpec((30, 16, 16, 2))
    lay = make_geometry("geometric", spec, True).layout
    blocks = lay.blocks
    assert [(b.layer, b.n_spheres, b.dim) for b in blocks] == [(0, 16, 30), (1, 16, 16), (2, 1, 32)]
    assert blocks[-1].radius == pytest.approx(math.sqrt(2))
    assert lay.n_spheres == 33 and lay.manifold_dim == 802 - 33
    assert lay.n_euclidean == 16 + 16 + 2
    lay_reg = make_geometry("geometric", spec, False).layout
    assert [b.layer for b in lay_reg.blocks] == [0, 1]
    assert lay_reg.n_euclidean == 16 + 16 + 32 + 2
    # segments tile the flat vector in order
    segs = lay_reg.segments
    assert segs[0].start == 0 and segs[-1].stop == 802
    assert all(a.stop == b.start for a, b in zip(segs[:-1], segs[1:]))


# ------------------------------------------------------------------------------ sphere kernels
@pytest.mark.parametrize("radius", [1.0, 2.5])
def test_sphere_maps_agree_with_geoopt(radius):
    g = _gen(1)
    man = geoopt.Sphere()
    x = sphere.random_uniform((64, 7), generator=g, dtype=D64)
    y = sphere.random_uniform((64, 7), generator=g, dtype=D64)
    u = man.proju(x, torch.randn(64, 7, generator=g, dtype=D64))
    assert torch.allclose(sphere.proju(x, u), man.proju(x, u), atol=1e-12)
    assert torch.allclose(sphere.expmap(x, u), man.expmap(x, u), atol=1e-10)
    assert torch.allclose(sphere.logmap(x, y), man.logmap(x, y), atol=1e-8)
    assert torch.allclose(sphere.dist(x, y), man.dist(x, y), atol=1e-8)
    assert torch.allclose(sphere.sq_dist(x, y), man.dist(x, y) ** 2, atol=1e-8)
    # radius by scaling
    r = radius
    assert torch.allclose(sphere.expmap(r * x, r * u, r), r * man.expmap(x, u), atol=1e-10)
    assert torch.allclose(sphere.logmap(r * x, r * y, r), r * man.logmap(x, y), atol=1e-8)
    assert torch.allclose(sphere.dist(r * x, r * y, r), r * man.dist(x, y), atol=1e-8)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("offset", [0.0, 1e-9, 1e-6, 1e-3, 1.0])
def test_exp_log_roundtrip_near_equal_and_antipodal(dtype, tol, offset):
    g = _gen(2)
    x = sphere.random_uniform((32, 6), generator=g, dtype=D64)
    noise = torch.randn(32, 6, generator=g, dtype=D64)
    for target in (x, -x):
        y = sphere.projx(target + offset * sphere.proju(target, noise))
        xd, yd = x.to(dtype), y.to(dtype)
        v = sphere.logmap(xd, yd)
        assert torch.isfinite(v).all()
        assert sphere.inner(xd, v).abs().max() < 10 * tol  # tangent
        back = sphere.expmap(xd, v)
        if target is x or offset > 1e-3 or dtype == torch.float64:
            assert (back - yd).abs().max() < max(tol, 1e3 * offset * torch.finfo(dtype).eps) * 10
        # distance = norm of log
        assert torch.allclose(v.norm(dim=-1), sphere.dist(xd, yd), atol=100 * tol)


def test_exactly_equal_points_and_finite_gradients():
    x = sphere.random_uniform((4, 5), generator=_gen(3), dtype=D64).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    assert sphere.logmap(x, y).abs().max() < 1e-15
    d2 = sphere.sq_dist(x, y).sum()
    gx, gy = torch.autograd.grad(d2, (x, y))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all() and gx.abs().max() < 1e-12
    u = torch.zeros_like(x, requires_grad=True)
    (gu,) = torch.autograd.grad(sphere.expmap(x.detach(), u).sum(), u)
    assert torch.isfinite(gu).all()
    (gl,) = torch.autograd.grad(sphere.logmap(x.detach(), y).sum(), y)
    assert torch.isfinite(gl).all()


def test_log_area_known_values():
    assert sphere.log_area(2, 3.0) == pytest.approx(math.log(2 * math.pi * 3.0))
    assert sphere.log_area(3, 2.0) == pytest.approx(math.log(4 * math.pi * 4.0))
    assert sphere.log_area(1) == pytest.approx(math.log(2.0))


# ----------------------------------------------------------------------------- geometries
@pytest.mark.parametrize("name", ["euclidean", "normalized", "geometric"])
def test_paths_start_end_and_stay_on_manifold(name):
    geo = make_geometry(name, SPEC, True)
    x0, x1 = _points(geo, 16, 0), _points(geo, 16, 1)
    b = x0.shape[0]
    assert torch.allclose(geo.interpolate(x0, x1, torch.zeros(b, dtype=D64)), x0, atol=1e-12)
    assert torch.allclose(geo.interpolate(x0, x1, torch.ones(b, dtype=D64)), x1, atol=1e-10)
    t = torch.rand(b, generator=_gen(5), dtype=D64)
    xt = geo.interpolate(x0, x1, t)
    if name == "geometric":
        assert geo.check(xt) == (True, "")
        # geodesic: constant speed, d(x0, xt) = t d(x0, x1) on each sphere
        for p0, p1, pt, seg in zip(*(geo.layout.split(z) for z in (x0, x1, xt)), geo.layout.segments):
            if seg.block is not None:
                r = seg.block.radius
                lhs = sphere.dist(p0, pt, r)
                rhs = t[:, None] * sphere.dist(p0, p1, r)
                assert torch.allclose(lhs, rhs, atol=1e-9)
    else:
        assert torch.allclose(xt, (1 - t[:, None]) * x0 + t[:, None] * x1)


@pytest.mark.parametrize("name", ["euclidean", "normalized", "geometric"])
@pytest.mark.parametrize("t0", [0.0, 0.3, 0.9, 0.9995])
def test_target_velocity_is_time_derivative_of_path(name, t0):
    geo = make_geometry(name, SPEC, True)
    x0, x1 = _points(geo, 8, 0), _points(geo, 8, 1)
    t = torch.full((8,), t0, dtype=D64)
    xt, dxt = torch.func.jvp(lambda s: geo.interpolate(x0, x1, s), (t,), (torch.ones_like(t),))
    u = geo.target_velocity(x0, x1, xt, t)
    assert torch.allclose(u, dxt, atol=1e-7)


def test_geometric_velocity_from_x1_is_log_not_x1_minus_x0():
    geo = make_geometry("geometric", SPEC, True)
    x0, x1 = _points(geo, 8, 0), _points(geo, 8, 1)
    t = torch.full((8,), 0.4, dtype=D64)
    xt = geo.interpolate(x0, x1, t)
    u = geo.target_velocity(x0, x1, xt, t)
    # a perfect prediction (even off the sphere by a positive scale) gives the target velocity
    v = geo.velocity_from_x1(xt, x1 * 1.7 - 0.7 * x1, t)
    assert torch.allclose(v, u, atol=1e-9)
    sph = x1 * 3.0  # any finite prediction gives a finite velocity, even at t = 1
    v3 = geo.velocity_from_x1(xt, geo.layout.map(lambda b, p: 3 * p, lambda p: p, x1), t)
    assert torch.allclose(v3, u, atol=1e-9)
    assert not torch.allclose(v, x1 - x0, atol=1e-3)
    assert torch.isfinite(geo.velocity_from_x1(x1, sph, torch.ones(8, dtype=D64))).all()


def test_euclidean_velocity_from_x1_clamped_near_one():
    geo = EuclideanGeometry(SPEC, min_gap=1e-3)
    x = torch.zeros(2, SPEC.n_params)
    v = geo.velocity_from_x1(x, torch.ones_like(x), torch.tensor([0.5, 1.0]))
    assert torch.allclose(v[0], torch.full_like(v[0], 2.0))
    assert torch.allclose(v[1], torch.full_like(v[1], 1e3))


@pytest.mark.parametrize("name", ["euclidean", "normalized", "geometric"])
def test_loss_and_cost_matrix(name):
    geo = make_geometry(name, SPEC, True)
    x0, x1 = _points(geo, 5, 0), _points(geo, 6, 1)
    x1_hat = x1.clone().requires_grad_(True)
    loss = geo.loss(x1_hat, x1)
    assert loss.shape == (6,) and loss.abs().max() < 1e-20
    (g,) = torch.autograd.grad(loss.sum(), x1_hat)
    assert torch.isfinite(g).all()
    cost = geo.cost_matrix(x0, x1)
    assert cost.shape == (5, 6)
    pair = geo.sq_dist(x0[:, None, :], x1[None, :, :])
    assert torch.allclose(cost, pair, atol=1e-9)
    assert torch.allclose(geo.loss(x0, x1[:5]), cost.diagonal() / SPEC.n_params, atol=1e-12)
    if name != "geometric":
        assert torch.allclose(cost, torch.cdist(x0, x1) ** 2, atol=1e-9)


def test_geometric_loss_matches_mse_for_small_errors():
    geo = GeometricGeometry(SPEC, True)
    x1 = _points(geo, 4)
    x1_hat = geo.expmap(x1, 1e-4 * geo.random_tangent(x1, _gen(9)))
    mse = ((x1_hat - x1) ** 2).mean(-1)
    assert torch.allclose(geo.loss(x1_hat, x1), mse, rtol=1e-6)


def test_random_tangent_and_proju_are_tangent():
    geo = GeometricGeometry(SPEC, True)
    x = _points(geo, 3)
    u = geo.random_tangent(x, _gen(4))
    for px, pu, seg in zip(geo.layout.split(x), geo.layout.split(u), geo.layout.segments):
        if seg.block is not None:
            assert sphere.inner(px, pu).abs().max() < 1e-12
        else:
            assert pu.abs().sum() > 0
    assert torch.allclose(geo.proju(x, u), u)
    y = geo.step(x, u, 0.3)
    assert geo.check(y)[0]
    assert torch.allclose(geo.logmap(x, y), 0.3 * u, atol=1e-10)


def test_check_reports_reason():
    geo = NormalizedGeometry(SPEC, True)
    x = _points(geo, 3, dtype=torch.float32)
    assert geo.check(x) == (True, "")
    bad = x.clone()
    bad[0, 0] += 0.1
    ok, reason = geo.check(bad)
    assert not ok and "layer 0" in reason
    bad = x.clone()
    bad[1, -1] = float("nan")
    assert geo.check(bad) == (False, "contains NaN or Inf")
    assert not geo.check(x[:, :-1])[0]
    # last layer on the sphere of radius sqrt(C)
    last = SPEC.slices[-1].weight
    assert torch.allclose(x[:, last].norm(dim=-1), torch.full((3,), math.sqrt(2.0)), atol=1e-6)
    # euclidean accepts anything finite
    assert make_geometry("euclidean", SPEC, True).check(bad.nan_to_num() * 10)[0]


def test_normalized_is_euclidean_flow_with_manifold_projection():
    geo = make_geometry("normalized", SPEC, True)
    x0, x1 = _points(geo, 4, 0), _points(geo, 4, 1)
    t = torch.full((4,), 0.5, dtype=D64)
    assert torch.allclose(geo.target_velocity(x0, x1, None, t), x1 - x0)
    assert torch.allclose(geo.step(x0, x1, 0.1), x0 + 0.1 * x1)
    mid = geo.interpolate(x0, x1, t)
    assert not geo.check(mid)[0] and geo.check(geo.projx(mid))[0]
    assert isinstance(geo.as_riemannian(), GeometricGeometry)


@pytest.mark.parametrize("scale", [0.0, 1e-7, 1e-3, 0.5, 2.5])
def test_dlogmap_matches_jvp_of_logmap(scale):
    g = _gen(11)
    r = 1.7
    x = sphere.random_uniform((16, 6), r, generator=g, dtype=D64)
    y = sphere.expmap(x, scale * sphere.proju(x, torch.randn(16, 6, generator=g, dtype=D64)), r)
    v = sphere.proju(y, torch.randn(16, 6, generator=g, dtype=D64))
    closed = sphere.dlogmap(x, y, v, r)
    _, ref = torch.func.jvp(lambda z: sphere.logmap(x, z, r), (y,), (v,))
    assert torch.allclose(closed, ref, atol=1e-8)
    if scale == 0.0:  # at y = x the differential is the identity on T_x
        assert torch.allclose(closed, v, atol=1e-12)
    geo = GeometricGeometry(SPEC, True)
    xs = _points(geo, 3)
    ys = geo.expmap(xs, 0.3 * geo.random_tangent(xs, _gen(1)))
    vs = geo.random_tangent(ys, _gen(2))
    _, ref = torch.func.jvp(lambda z: geo.logmap(xs, z), (ys,), (vs,))
    assert torch.allclose(geo.pullback(xs, ys, vs), ref, atol=1e-8)
