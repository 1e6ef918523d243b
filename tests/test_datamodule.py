"""WeightZooDataModule: whole-trajectory validation split, batches, validation of arguments,
Gaussian zoo, alignment and canonicalization hooks with their cache."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lightning_wflow.lit.datamodule import WeightZooDataModule

TINY = dict(
    task="uci_breast_cancer",
    layer_sizes=[30, 8, 2],
    n_runs=5,
    epochs=3,
    zoo_batch_size=64,
    lr=1e-2,
    burn_in_epochs=1,
    record_every=4,
    zoo_seed=1,
    val_runs=2,
    batch_size=6,
    progress=False,
)

has_symmetry = importlib.util.find_spec("lightning_wflow.symmetry") is not None
needs_symmetry = pytest.mark.skipif(not has_symmetry, reason="lightning_wflow.symmetry not present")


def _dm(tmp_path, **kw) -> WeightZooDataModule:
    dm = WeightZooDataModule(**{**TINY, "cache_dir": str(tmp_path / "cache"), **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_whole_runs_held_out_for_validation(tmp_path):
    dm = _dm(tmp_path)
    zoo = dm.zoo
    T, P = zoo.n_checkpoints, dm.spec.n_params
    assert zoo.weights.shape == (5, T, P)
    assert dm.train_run_ids == [0, 1, 2] and dm.val_run_ids == [3, 4]
    assert dm.train_weights.shape == (3 * T, P) and dm.val_weights.shape == (2 * T, P)
    torch.testing.assert_close(dm.train_weights, zoo.weights[:3].reshape(-1, P))
    torch.testing.assert_close(dm.val_weights, zoo.weights[3:].reshape(-1, P))
    # disjoint: no validation network is a checkpoint of a training run
    dist = torch.cdist(dm.val_weights, dm.train_weights)
    assert dist.min() > 1e-3
    assert dm.target_accuracy.shape == (5,)


def test_dataloaders_yield_flat_batches(tmp_path):
    dm = _dm(tmp_path)
    train = list(dm.train_dataloader())
    assert all(b.ndim == 2 and b.shape[1] == dm.spec.n_params for b in train)
    assert train[0].shape[0] == 6
    assert sum(b.shape[0] for b in train) == dm.train_weights.shape[0]
    val = torch.cat(list(dm.val_dataloader()))
    assert torch.equal(val, dm.val_weights)  # deterministic order
    assert torch.equal(torch.cat(list(dm.val_dataloader())), val)


def test_second_datamodule_reuses_the_zoo(tmp_path):
    first = _dm(tmp_path)
    second = _dm(tmp_path)
    assert second.zoo.build.trained == () and second.zoo.path == first.zoo.path
    assert torch.equal(second.train_weights, first.train_weights)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"task": "cifar"}, "unknown task 'cifar'; available tasks: .*mnist"),
        ({"val_runs": 5}, "val_runs must be an integer in \\[1, n_runs - 1 = 4\\]"),
        ({"val_runs": 0}, "val_runs must be"),
        ({"burn_in_epochs": 4}, "burn_in_epochs \\(4\\) must be smaller than epochs \\(3\\)"),
        ({"record_every": 0}, "record_every must be an integer >= 1"),
        ({"n_runs": 0}, "n_runs must be an integer >= 1"),
        ({"layer_sizes": [784, 10, 10]}, "30 input features"),
        ({"alignment": "magic"}, "alignment must be one of \\['none', 'weight_matching'"),
        ({"reference": "worst"}, "reference must be one of \\['best', 'first'\\]"),
        ({"canonicalize": True, "activation": "tanh"}, "canonicalize needs a positively homogeneous"),
        ({"alignment_kwargs": {"max_iter": 3}}, "alignment is 'none'"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_arguments_refused_in_constructor(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        WeightZooDataModule(**{**TINY, "cache_dir": str(tmp_path / "c"), **change})
    assert not (tmp_path / "c").exists()


def test_properties_before_setup_explain_themselves(tmp_path):
    dm = WeightZooDataModule(**{**TINY, "cache_dir": str(tmp_path)})
    assert dm.spec.layer_sizes == (30, 8, 2) and dm.task_obj.name == "uci_breast_cancer"
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.train_weights


def test_gaussian_zoo(tmp_path):
    dm = _dm(
        tmp_path, task="gaussian", layer_sizes=[30, 16, 16, 2], n_samples=200, val_runs=40,
        gaussian_mean=1.0, gaussian_std=1.0,
    )
    assert dm.train_weights.shape == (160, dm.spec.n_params)
    assert dm.val_weights.shape == (40, dm.spec.n_params)
    assert abs(dm.train_weights.mean().item() - 1.0) < 0.02
    assert dm.target_accuracy is None
    assert not (tmp_path / "cache").exists()  # nothing to store
    again = _dm(tmp_path, task="gaussian", layer_sizes=[30, 16, 16, 2], n_samples=200, val_runs=40)
    assert torch.equal(again.train_weights, dm.train_weights)


def test_gaussian_refuses_loss_based_choices(tmp_path):
    with pytest.raises(ValueError, match="reference 'best' needs a task loss"):
        WeightZooDataModule(
            task="gaussian", layer_sizes=[4, 3, 2], alignment="weight_matching", n_samples=10,
            val_runs=2,
        )


def test_signature_is_readable_by_jsonargparse(tmp_path):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(WeightZooDataModule, "data")
    cfg = parser.parse_object({"data": {**TINY, "cache_dir": str(tmp_path)}})
    init = parser.instantiate_classes(cfg)
    assert isinstance(init.data, WeightZooDataModule)
    assert init.data.layer_sizes == [30, 8, 2]


@needs_symmetry
def test_alignment_is_cached_and_keeps_the_functions(tmp_path, monkeypatch):
    dm = _dm(tmp_path, alignment="weight_matching")
    ref = dm.reference_index
    assert ref is not None and 0 <= ref < 3  # chosen among training runs
    zoo = dm.zoo
    flat_raw = zoo.weights.reshape(-1, dm.spec.n_params)
    flat_aligned = dm.weights.reshape(-1, dm.spec.n_params)
    task = dm.task_obj
    before = task.evaluate(dm.spec, flat_raw, "test")
    after = task.evaluate(dm.spec, flat_aligned, "test")
    torch.testing.assert_close(after.accuracy, before.accuracy)
    torch.testing.assert_close(after.loss, before.loss, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dm.weights[ref, -1], zoo.final[ref])  # reference is a fixed point
    assert list((zoo.path / "aligned").glob("*/aligned.safetensors"))

    import lightning_wflow.symmetry as symmetry

    def no_alignment(*args, **kwargs):
        raise AssertionError("alignment recomputed instead of read from the cache")

    monkeypatch.setattr(symmetry, "align", no_alignment)
    cached = _dm(tmp_path, alignment="weight_matching")
    assert torch.equal(cached.weights, dm.weights) and cached.reference_index == ref


@needs_symmetry
def test_canonicalize_hook(tmp_path):
    from lightning_wflow.symmetry import is_canonical

    dm = _dm(tmp_path, canonicalize=True)
    ok, why = is_canonical(dm.spec, dm.train_weights, last_layer_sphere=True)
    assert ok, why
    raw = dm.task_obj.evaluate(dm.spec, dm.zoo.weights.reshape(-1, dm.spec.n_params)).accuracy
    canon = dm.task_obj.evaluate(dm.spec, dm.weights.reshape(-1, dm.spec.n_params)).accuracy
    torch.testing.assert_close(canon, raw)  # rescaling keeps every prediction
