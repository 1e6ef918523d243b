import io
import json
import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy.spatial.distance import jensenshannon

from lightning_wflow.evaluation import (
    BMAPoint,
    SampleQuality,
    bma_curve,
    default_ks,
    expected_calibration_error,
    format_markdown,
    mean_pairwise_jsd,
    minibatch_indices,
    pairwise_jsd,
    plot_bma,
    plot_histograms,
    plot_init_curves,
    plot_steps_sweep,
    predictive_probs,
    sample_quality,
    train_from_init,
    write_results,
)
from lightning_wflow.weights import MLPSpec


def _nets(sizes=(5, 8, 3), b=4, n=50, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    spec = MLPSpec(sizes)
    flat = torch.randn(b, spec.n_params, generator=g, dtype=dtype)
    x = torch.randn(n, sizes[0], generator=g, dtype=dtype)
    y = torch.randint(0, sizes[-1], (n,), generator=g)
    return spec, flat, x, y


def _random_probs(b, n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(b, n, c, generator=g, dtype=torch.float64), -1)


# ------------------------------------------------------------------------- sample quality
@pytest.mark.parametrize("batch_size", [None, 7])
def test_sample_quality_matches_sequential_loop(batch_size):
    spec, flat, x, y = _nets()
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    q = sample_quality(spec, flat, x, y, batch_size=batch_size, logit_scale=scale)
    for i, net in enumerate(spec.to_sequentials(flat)):
        logits = net.double()(x)
        acc = (logits.argmax(-1) == y).double().mean()
        assert q.accuracy[i].item() == pytest.approx(acc.item(), abs=1e-6)
        assert q.loss[i].item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
        scaled = F.cross_entropy(logits * scale[i], y).item()
        assert q.scaled_loss[i].item() == pytest.approx(scaled, rel=1e-5)
    assert q.accuracy.shape == q.loss.shape == (4,)
    assert sample_quality(spec, flat, x, y).scaled_loss is None


def test_sample_quality_summary_and_errors():
    spec, flat, x, y = _nets()
    q = SampleQuality(accuracy=torch.tensor([0.5, 1.0]), loss=torch.tensor([1.0, 3.0]))
    s = q.summary()
    assert s == {"accuracy_mean": 0.75, "accuracy_std": 0.25, "loss_mean": 2.0,
                 "loss_std": 1.0, "n_networks": 2.0}
    with pytest.raises(ValueError, match="logit_scale"):
        sample_quality(spec, flat, x, y, logit_scale=torch.ones(3))
    with pytest.raises(ValueError, match="batch_size"):
        sample_quality(spec, flat, x, y, batch_size=0)
    with pytest.raises(ValueError, match="y must"):
        sample_quality(spec, flat, x, y[:-1])
    with pytest.raises(ValueError, match="features"):
        sample_quality(spec, flat, x[:, :4], y)


# ------------------------------------------------------------------------------ diversity
def test_jsd_identical_zero_different_positive_symmetric_bounded():
    probs = _random_probs(5, 20, 4)
    same = probs[:1].expand(6, -1, -1).clone()
    assert mean_pairwise_jsd(same).item() == 0.0
    d = pairwise_jsd(probs)
    assert torch.equal(d, d.T)
    assert torch.equal(d.diagonal(), torch.zeros(5, dtype=d.dtype))
    off = d[~torch.eye(5, dtype=torch.bool)]
    assert (off > 0).all() and (off <= math.log(2)).all()
    # disjoint supports reach the bound log 2
    onehot = torch.stack([F.one_hot(torch.zeros(3, dtype=torch.long), 2),
                          F.one_hot(torch.ones(3, dtype=torch.long), 2)]).double()
    assert mean_pairwise_jsd(onehot).item() == pytest.approx(math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 networks"):
        mean_pairwise_jsd(probs[:1])


def test_jsd_matches_scipy():
    probs = _random_probs(4, 6, 3, seed=1)
    probs[0, 0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # 0 log 0 terms
    expected = np.zeros((4, 4))
    p = probs.numpy()
    for i in range(4):
        for j in range(4):
            # scipy returns the distance sqrt(JSD) with natural log (base=None)
            expected[i, j] = np.mean([jensenshannon(p[i, n], p[j, n]) ** 2 for n in range(6)])
    np.testing.assert_allclose(pairwise_jsd(probs).numpy(), expected, rtol=1e-10, atol=1e-14)
    iu = np.triu_indices(4, 1)
    assert mean_pairwise_jsd(probs).item() == pytest.approx(expected[iu].mean(), rel=1e-10)
    # chunked rows give the same matrix
    torch.testing.assert_close(pairwise_jsd(probs, chunk_elements=1), pairwise_jsd(probs))


def test_jsd_finite_for_float32_subnormal_probabilities():
    # softmax of confident float32 networks gives subnormal class probabilities; their midpoint
    # (p + q) / 2 underflows to 0 in float32, which made xlogy(p, m) infinite
    tiny = torch.finfo(torch.float32).smallest_normal / 2**23  # the smallest float32 subnormal
    p = torch.tensor([[[1.0 - tiny, tiny]]], dtype=torch.float32)
    q = torch.tensor([[[1.0, 0.0]]], dtype=torch.float32)
    assert 0.5 * (p[0, 0, 1] + q[0, 0, 1]) == 0  # the float32 underflow this guards against
    d = mean_pairwise_jsd(torch.cat([p, q]))
    assert d.dtype == torch.float32 and torch.isfinite(d) and 0 <= d.item() < 1e-30


# ---------------------------------------------------------------- BMA and calibration
def test_bma_of_one_sample_equals_its_accuracy():
    spec, flat, x, y = _nets(b=5, n=200)
    probs = predictive_probs(spec, flat, x, batch_size=64)
    q = sample_quality(spec, flat, x, y)
    for i in range(5):
        (point,) = bma_curve(probs[i : i + 1], y, ks=[1])
        assert point.k == 1
        assert point.accuracy == pytest.approx(q.accuracy[i].item(), abs=1e-7)
        assert point.nll == pytest.approx(q.loss[i].item(), rel=1e-6)


def test_bma_of_copies_and_prefix_means():
    spec, flat, x, y = _nets(b=6, n=100)
    probs = predictive_probs(spec, flat, x)
    copies = probs[:1].expand(7, -1, -1)
    points = bma_curve(copies, y)
    assert [p.k for p in points] == default_ks(7) == [1, 2, 4, 7]
    assert len({p.accuracy for p in points}) == 1
    for p in points:
        assert p.nll == pytest.approx(points[0].nll, rel=1e-12)
        assert p.ece == pytest.approx(points[0].ece, abs=1e-6)
    # k = 3 prefix against a direct average
    (p3,) = bma_curve(probs, y, ks=[3])
    avg = probs[:3].mean(0)
    assert p3.accuracy == pytest.approx((avg.argmax(-1) == y).double().mean().item())
    assert p3.nll == pytest.approx(-avg[torch.arange(100), y].log().mean().item(), rel=1e-10)
    assert p3.ece == pytest.approx(expected_calibration_error(avg, y), abs=1e-6)
    with pytest.raises(ValueError, match="ks"):
        bma_curve(probs, y, ks=[0, 2])
    with pytest.raises(ValueError, match="ks"):
        bma_curve(probs, y, ks=[7])


def test_ece_calibrated_near_zero_and_overconfident_large():
    g = torch.Generator().manual_seed(0)
    n, c = 40000, 3
    p = torch.distributions.Dirichlet(torch.ones(c)).sample((n,))
    y = torch.multinomial(p, 1, generator=g).squeeze(1)
    assert expected_calibration_error(p, y) < 0.02
    sharp = F.one_hot(p.argmax(-1), c).float() * 0.98 + 0.01
    assert expected_calibration_error(sharp, y) > 0.2
    # binary form: probability of class 1
    p1 = torch.rand(n, generator=g)
    y1 = (torch.rand(n, generator=g) < p1).long()
    assert expected_calibration_error(p1, y1) < 0.02
    assert expected_calibration_error((p1 > 0.5).float() * 0.98 + 0.01, y1) > 0.2
    with pytest.raises(ValueError, match="norm"):
        expected_calibration_error(p, y, norm="l3")
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(p, y, n_bins=0)


# ------------------------------------------------------------------ learned initialisation
def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) * 0.5 + (2.0 * y - 1.0).unsqueeze(1) * 1.5
    return x, y


def test_train_from_init_lowers_loss_on_separable_toy():
    spec = MLPSpec((2, 8, 2))
    x_tr, y_tr = _blobs(200, 0)
    x_te, y_te = _blobs(100, 1)
    init = torch.randn(3, spec.n_params, generator=torch.Generator().manual_seed(2)) * 0.3
    curve = train_from_init(spec, init, x_tr, y_tr, x_te, y_te, steps=60, lr=0.05,
                            batch_size=32, eval_every=25, generator=torch.Generator().manual_seed(3))
    assert curve.steps.tolist() == [0, 25, 50, 60]
    assert curve.accuracy.shape == curve.loss.shape == (4, 3)
    assert (curve.loss[-1] < 0.5 * curve.loss[0]).all()
    assert (curve.accuracy[-1] > 0.95).all()
    torch.testing.assert_close(curve.loss[0], sample_quality(spec, init, x_te, y_te).loss)
    assert curve.final.shape == init.shape and not torch.equal(curve.final, init)


@pytest.mark.parametrize("optimizer,batch_size", [("adam", 8), ("sgd", 8), ("adam", None)])
def test_train_from_init_equals_separate_training(optimizer, batch_size):
    spec = MLPSpec((2, 6, 2))
    x_tr, y_tr = _blobs(20, 0)
    x_te, y_te = _blobs(30, 1)
    x_tr, x_te = x_tr.double(), x_te.double()
    init = torch.randn(3, spec.n_params, generator=torch.Generator().manual_seed(5)).double()
    steps, lr = 7, 0.05  # 7 steps of 8 out of 20 examples: crosses epoch boundaries
    curve = train_from_init(spec, init, x_tr, y_tr, x_te, y_te, steps=steps, lr=lr,
                            batch_size=batch_size, optimizer=optimizer, eval_every=3,
                            generator=torch.Generator().manual_seed(9))
    assert curve.steps.tolist() == [0, 3, 6, 7]
    batches = minibatch_indices(3, 20, batch_size, torch.Generator().manual_seed(9))
    indices = [next(batches) for _ in range(steps)]
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    for i, net in enumerate(spec.to_sequentials(init)):
        net = net.double()
        opt = opt_cls(net.parameters(), lr=lr)
        for idx in indices:
            loss = F.cross_entropy(net(x_tr[idx[i]]), y_tr[idx[i]])
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.testing.assert_close(curve.final[i], spec.from_sequential(net)[0], rtol=1e-9, atol=1e-11)
        with torch.no_grad():
            ref_loss = F.cross_entropy(net(x_te), y_te).item()
        assert curve.loss[-1, i].item() == pytest.approx(ref_loss, rel=1e-5)


def test_minibatch_indices_are_per_network_epochs():
    batches = minibatch_indices(4, 10, 3, torch.Generator().manual_seed(0))
    epoch = torch.cat([next(batches) for _ in range(3)], dim=1)  # 3 blocks of 3, one dropped
    assert epoch.shape == (4, 9)
    for row in epoch:
        assert len(set(row.tolist())) == 9
    assert len({tuple(r.tolist()) for r in epoch}) == 4  # different orders per network
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_indices(4, 10, 0)


def test_train_from_init_rejects_bad_arguments():
    spec = MLPSpec((2, 4, 2))
    x, y = _blobs(10, 0)
    init = torch.zeros(2, spec.n_params)
    for kwargs, match in [({"optimizer": "rmsprop"}, "optimizer must be one of"),
                          ({"steps": -1}, "steps"), ({"lr": 0.0}, "lr"),
                          ({"eval_every": 0}, "eval_every"), ({"batch_size": 0}, "batch_size")]:
        args = {"steps": 2, **kwargs}
        with pytest.raises(ValueError, match=match):
            train_from_init(spec, init, x, y, x, y, **args)


# ------------------------------------------------------------------------------- figures
def test_plots_return_figures():
    steps = torch.tensor([8, 16, 32])
    fig = plot_steps_sweep(steps, {"plain": torch.rand(3), "guided": torch.rand(3, 5)},
                           {"plain": torch.rand(3), "guided": torch.rand(3, 5)})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    points = [BMAPoint(1, 0.8, 0.5, 0.05), BMAPoint(2, 0.85, 0.4, 0.04)]
    assert len(plot_bma({"flow": points, "target": points}).axes) == 3
    spec = MLPSpec((2, 3, 2))
    x, y = _blobs(12, 0)
    curve = train_from_init(spec, torch.zeros(2, spec.n_params), x, y, x, y, steps=2, eval_every=1)
    assert len(plot_init_curves({"prior": curve}).axes) == 2
    fig = plot_histograms({"flow": torch.rand(10), "target": np.ones(4)}, "test accuracy")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="acc_by_label"):
        plot_steps_sweep(steps, {"plain": torch.rand(4)}, {"plain": torch.rand(3)})


# ------------------------------------------------------------------------------ results
def _results():
    return {
        "task": "uci_wine",
        "sample_quality": {
            "flow": SampleQuality(torch.tensor([0.5, 1.0]), torch.tensor([1.0, float("nan")])),
            "target": {"accuracy": torch.tensor([0.9, 0.7]), "diversity": 0.125},
        },
        "bma": {"flow": [BMAPoint(1, 0.8, 0.5, 0.05), BMAPoint(2, 0.9, 0.4, 0.03)]},
        "summary_stats": {"flow": {"accuracy_mean": 0.75, "accuracy_std": 0.25}},
    }


def test_write_results_writes_parseable_json_and_markdown(tmp_path):
    pj, pm = tmp_path / "out" / "results.json", tmp_path / "out" / "results.md"
    write_results(pj, pm, _results())
    data = json.loads(pj.read_text())
    assert data["task"] == "uci_wine"
    assert data["sample_quality"]["flow"]["accuracy"] == {"mean": 0.75, "std": 0.25, "n": 2}
    assert data["sample_quality"]["flow"]["loss"]["mean"] is None  # NaN -> null, strict JSON
    assert data["bma"]["flow"][1] == {"k": 2, "accuracy": 0.9, "nll": 0.4, "ece": 0.03}
    md = pm.read_text()
    assert md == format_markdown(_results())
    for heading in ("## summary", "## sample_quality", "## bma", "## summary_stats"):
        assert heading in md
    assert "| flow | 0.75 ± 0.25 |" in md  # accuracy column of sample_quality and summary_stats
    assert "| target | 0.8 ± 0.1 |" in md
    assert md.count("| flow | 1 |") == 1 and "| flow | 2 | 0.9 | 0.4 | 0.03 |" in md
    assert sorted(p.name for p in pj.parent.iterdir()) == ["results.json", "results.md"]


def test_write_results_leaves_no_half_written_file(tmp_path, monkeypatch):
    pj, pm = tmp_path / "results.json", tmp_path / "results.md"
    bad = _results()
    bad["late"] = {"flow": {"accuracy": 0.5, "weird": object()}}
    with pytest.raises(TypeError, match=r"results\.late\.flow\.weird"):
        write_results(pj, pm, bad)
    assert list(tmp_path.iterdir()) == []
    # an earlier complete result survives a failing rewrite
    write_results(pj, pm, _results())
    before = (pj.read_text(), pm.read_text())
    with pytest.raises(TypeError):
        write_results(pj, pm, bad)
    assert (pj.read_text(), pm.read_text()) == before
    # interrupted while the bytes are being written: no partial file, no temp file
    pj.unlink(), pm.unlink()
    real_write = pathlib.Path.write_text

    def half_then_interrupt(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_results(pj, pm, _results())
    assert list(tmp_path.iterdir()) == []
