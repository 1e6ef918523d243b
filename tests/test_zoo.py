"""Zoo: vectorized training equals plain per-network training, schedule, cache, resumption."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lightning_wflow.tasks import get_task
from lightning_wflow.zoo import (
    RunRandomness,
    ZooCacheWarning,
    ZooConfig,
    build_zoo,
    load_zoo,
    sample_gaussian_zoo,
    train_trajectories,
    zoo_path,
)
from lightning_wflow.zoo.__main__ import main as zoo_main

# 30-8-2 MLP on UCI: 455 examples / 64 -> 8 iterations per epoch (the last one of 7 examples).
TINY = ZooConfig(
    task="uci_breast_cancer",
    layer_sizes=(30, 8, 2),
    n_runs=3,
    epochs=3,
    batch_size=64,
    optimizer="adam",
    lr=1e-2,
    init_std=0.3,
    burn_in_epochs=1,
    record_every=3,
    seed=7,
)
SGD = replace(TINY, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3)


def plain_loop(cfg: ZooConfig, run: int) -> list[torch.Tensor]:
    """One run the way a user writes it: nn.Sequential, torch.optim, a Python loop over batches.

    Returns the flat weights after every optimiser step (index t = after step t; 0 = init).
    """
    spec = cfg.spec
    data = get_task(cfg.task, seed=cfg.split_seed).data()
    rng = RunRandomness(cfg.seed, [run])
    net = spec.build_sequential()
    init = rng.initial(spec.n_params, cfg.init_mean, cfg.init_std)
    net.load_state_dict({k: v[0] for k, v in spec.to_state_dicts(init).items()})
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(
            net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    history = [spec.from_sequential(net)[0]]
    n = data.x_train.shape[0]
    for _ in range(cfg.epochs):
        perm = rng.permutations(n)[0]
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(spec.from_sequential(net)[0])
    return history


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "change,match",
    [
        ({"burn_in_epochs": 3}, "burn_in_epochs \\(3\\) must be smaller than epochs \\(3\\)"),
        ({"record_every": 0}, "record_every must be an integer >= 1"),
        ({"n_runs": 0}, "n_runs must be an integer >= 1"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of \\['adam', 'sgd'\\]"),
        ({"task": "cifar"}, "unknown task 'cifar'; available tasks: .*uci_breast_cancer"),
        ({"layer_sizes": (784, 10, 10)}, "task 'uci_breast_cancer' has 30 input features"),
        ({"task": "gaussian"}, "has no data to train a zoo on"),
        ({"lr": -1.0}, "lr must be a positive"),
    ],
)
def test_bad_configs_refused_before_any_work(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        build_zoo(replace(TINY, **change), tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_interval_longer_than_recording_refused(tmp_path):
    with pytest.raises(ValueError, match="record_every \\(100\\) is longer than the 16 iterations"):
        build_zoo(replace(TINY, record_every=100), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_key_ignores_data_root_and_int_float_spelling():
    assert TINY.key() == replace(TINY, data_root="/elsewhere").key()
    assert replace(TINY, init_mean=0).key() == replace(TINY, init_mean=0.0).key()
    assert TINY.key() != replace(TINY, lr=2e-2).key()


# ------------------------------------------------------------------ schedule
def test_schedule_counts():
    sched = TINY.schedule(455)
    assert sched.iters_per_epoch == 8 and sched.n_iterations == 24
    assert sched.burn_in_iterations == 8
    assert sched.recorded_steps == (11, 14, 17, 20, 23)
    uci = ZooConfig().schedule(455)  # the reference recipe: 150 checkpoints, the last is final
    assert len(uci.recorded_steps) == 150 and uci.recorded_steps[-1] == 750


# ------------------------------------------------- vectorized == plain loop
@pytest.mark.parametrize("cfg", [TINY, SGD], ids=["adam", "sgd"])
def test_vectorized_equals_plain_loop_at_the_recorded_steps(cfg):
    task = get_task(cfg.task)
    traj = train_trajectories(cfg, task, range(cfg.n_runs), progress=False)
    steps = list(cfg.schedule(455).recorded_steps)
    assert traj.weights.shape == (3, len(steps), cfg.spec.n_params)
    assert traj.steps.tolist() == steps
    for r in range(cfg.n_runs):
        history = plain_loop(cfg, r)
        expected = torch.stack([history[t] for t in steps])
        torch.testing.assert_close(traj.weights[r], expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(traj.final[r], history[-1], atol=2e-5, rtol=1e-4)
        # and not the neighbouring steps: the recording is exact, not approximate
        shifted = torch.stack([history[t + 1] for t in steps])
        assert (traj.weights[r] - shifted).abs().max() > 1e-3


def test_run_depends_only_on_seed_and_index():
    task = get_task(TINY.task)
    all3 = train_trajectories(TINY, task, [0, 1, 2], progress=False)
    alone = train_trajectories(TINY, task, [2], progress=False)
    torch.testing.assert_close(alone.weights[0], all3.weights[2], atol=1e-6, rtol=0)
    assert not torch.allclose(all3.weights[0], all3.weights[1])  # runs differ


# --------------------------------------------------------------------- cache
def test_cache_reused_and_rebuilt_on_config_change(tmp_path):
    zoo = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    assert zoo.build.trained == ((0, 2), (2, 3)) and zoo.build.reused == ()
    assert zoo.weights.shape == (3, 5, TINY.spec.n_params)
    files = sorted(zoo.path.glob("*"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}

    again = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    assert again.build.trained == () and again.build.reused == ((0, 2), (2, 3))
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes  # nothing rewritten
    assert torch.equal(again.weights, zoo.weights)

    changed = build_zoo(replace(TINY, lr=2e-2), tmp_path, progress=False, chunk_runs=2)
    assert changed.path != zoo.path and changed.build.trained == ((0, 2), (2, 3))
    assert not torch.allclose(changed.weights, zoo.weights)


def test_target_accuracy_is_the_final_networks_test_accuracy(tmp_path):
    zoo = build_zoo(TINY, tmp_path, progress=False)
    ev = get_task(TINY.task).evaluate(TINY.spec, zoo.final, "test")
    torch.testing.assert_close(zoo.target_accuracy, ev.accuracy)
    torch.testing.assert_close(zoo.target_loss, ev.loss)
    assert zoo.manifest["target"]["accuracy_mean"] == pytest.approx(ev.accuracy.mean().item())
    assert zoo.target_accuracy.mean() > 0.8
    loaded = load_zoo(zoo.path)  # needs only the folder
    assert torch.equal(loaded.weights, zoo.weights) and loaded.spec == zoo.spec


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupt_chunk_is_detected_and_rebuilt(tmp_path, damage):
    zoo = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    path = zoo.path / zoo.manifest["chunks"][1]["file"]
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-5] ^= 0xFF  # same size, different content: only the checksum can tell
        path.write_bytes(bytes(blob))
    elif damage == "truncate":
        path.write_bytes(bytes(blob[: len(blob) // 2]))
    else:
        path.unlink()
    with pytest.warns(ZooCacheWarning, match="runs 2-3 is unusable"):
        again = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    assert again.build.trained == ((2, 3),) and again.build.reused == ((0, 2),)
    assert torch.equal(again.weights, zoo.weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_zoo(TINY, tmp_path, progress=False, chunk_runs=2).build.trained == ()


@pytest.mark.parametrize("damage", ["config", "task", "json"])
def test_mismatching_or_broken_manifest_is_rebuilt(tmp_path, damage):
    zoo = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    mpath = zoo.path / "manifest.json"
    manifest = json.loads(mpath.read_text())
    if damage == "config":
        manifest["config"]["lr"] = 0.5
        mpath.write_text(json.dumps(manifest))
    elif damage == "task":  # e.g. another split of the data under the same key
        manifest["task"]["split"]["test_indices"][0] += 1
        mpath.write_text(json.dumps(manifest))
    else:
        mpath.write_text(mpath.read_text()[:100])
    with pytest.warns(ZooCacheWarning, match="rebuilding"):
        again = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    assert again.build.trained == ((0, 2), (2, 3))
    assert torch.equal(again.weights, zoo.weights)


class Interrupt(Exception):
    pass


def test_interrupted_build_resumes_without_duplicates_or_losses(tmp_path):
    cfg = replace(TINY, n_runs=5)
    reference = build_zoo(cfg, tmp_path / "a", progress=False, chunk_runs=2)

    def stop_after_first(a: int, b: int) -> None:
        if (a, b) == (0, 2):
            raise Interrupt

    with pytest.raises(Interrupt):
        build_zoo(cfg, tmp_path / "b", progress=False, chunk_runs=2, on_chunk=stop_after_first)
    folder = zoo_path(cfg, tmp_path / "b")
    partial = json.loads((folder / "manifest.json").read_text())
    assert partial["complete"] is False and [c["runs"] for c in partial["chunks"]] == [[0, 2]]

    resumed = build_zoo(cfg, tmp_path / "b", progress=False, chunk_runs=2)
    assert resumed.build.reused == ((0, 2),) and resumed.build.trained == ((2, 4), (4, 5))
    assert resumed.manifest["complete"] is True
    assert [c["runs"] for c in resumed.manifest["chunks"]] == [[0, 2], [2, 4], [4, 5]]
    assert resumed.weights.shape == reference.weights.shape
    assert torch.equal(resumed.weights, reference.weights)
    assert torch.equal(resumed.target_accuracy, reference.target_accuracy)
    assert len(list(folder.glob("runs_*.safetensors"))) == 3


def test_changing_chunk_size_keeps_the_runs(tmp_path):
    a = build_zoo(TINY, tmp_path, progress=False, chunk_runs=2)
    b = build_zoo(TINY, tmp_path, progress=False, chunk_runs=3)  # same folder, new chunking
    assert b.build.trained == ((0, 3),)
    torch.testing.assert_close(a.weights, b.weights, atol=1e-6, rtol=0)
    assert [p.name for p in b.path.glob("runs_*")] == ["runs_00000-00003.safetensors"]


# ------------------------------------------------------------------ gaussian
def test_gaussian_zoo_is_seeded_draws():
    from lightning_wflow.weights import MLPSpec

    spec = MLPSpec((30, 16, 16, 2))
    zoo = sample_gaussian_zoo(spec, 400, mean=1.0, std=2.0, seed=3)
    assert zoo.weights.shape == (400, 1, spec.n_params) and zoo.target_accuracy is None
    assert abs(zoo.final.mean().item() - 1.0) < 0.02 and abs(zoo.final.std().item() - 2.0) < 0.02
    assert torch.equal(zoo.final, sample_gaussian_zoo(spec, 400, 1.0, 2.0, seed=3).final)
    with pytest.raises(ValueError, match="gaussian_std"):
        sample_gaussian_zoo(spec, 4, 1.0, 0.0, seed=0)


# ----------------------------------------------------------------------- CLI
def test_zoo_command_prints_path_and_target(tmp_path, capsys):
    config = tmp_path / "zoo.yaml"
    config.write_text(
        "task: uci_breast_cancer\nlayer_sizes: [30, 8, 2]\nn_runs: 3\nepochs: 2\n"
        "batch_size: 64\nburn_in_epochs: 1\nrecord_every: 4\n"
    )
    zoo_main(["--config", str(config), "--cache_dir", str(tmp_path / "c"), "--progress", "false"])
    out = capsys.readouterr().out
    assert f"zoo: {tmp_path / 'c'}" in out
    assert "target test accuracy: 0." in out and "+-" in out
