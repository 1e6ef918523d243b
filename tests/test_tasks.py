"""Base tasks: registry, data and preprocessing, loss, batched evaluation, loss closures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_wflow.tasks import (
    TASKS,
    GaussianTask,
    UCIBreastCancer,
    available_tasks,
    get_task,
)
from lightning_wflow.weights import MLPSpec

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def _has_raw(folder: str) -> bool:
    raw = DATA_ROOT / folder / "raw"
    return raw.is_dir() and (raw / "train-images-idx3-ubyte").is_file()


needs_mnist = pytest.mark.skipif(
    not _has_raw("MNIST"), reason=f"MNIST raw files not found in {DATA_ROOT}/MNIST/raw"
)

UCI_SPEC = MLPSpec((30, 8, 2))


def _random_nets(spec: MLPSpec, n: int, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(n, spec.n_params, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ registry
def test_registry_lists_every_task():
    expected = {"uci_breast_cancer", "mnist", "fashion_mnist", "kmnist", "mnist_permuted", "gaussian"}
    assert set(available_tasks()) == expected == set(TASKS)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="unknown task 'cifar'.*mnist.*uci_breast_cancer"):
        get_task("cifar")


def test_spec_must_fit_task():
    task = get_task("uci_breast_cancer")
    with pytest.raises(ValueError, match="30 input features"):
        task.check_spec(MLPSpec((31, 2)))
    with pytest.raises(ValueError, match="2 classes"):
        task.check_spec(MLPSpec((30, 3)))


# ----------------------------------------------------------------------- UCI
def test_uci_split_and_standardisation():
    task = get_task("uci_breast_cancer", seed=0)
    d = task.data()
    assert d.x_train.shape == (455, 30) and d.x_test.shape == (114, 30)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    # standardised with training statistics
    torch.testing.assert_close(d.x_train.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.x_train.std(0, unbiased=False), torch.ones(30), atol=1e-4, rtol=0)
    # stratified: class fractions agree to within one example
    frac_train, frac_test = d.y_train.float().mean(), d.y_test.float().mean()
    assert abs(frac_train - frac_test) < 1.5 / 114
    assert task.data() is d or torch.equal(task.data().x_train, d.x_train)  # cached per process


def test_uci_metadata_rebuilds_the_data_without_the_package():
    from sklearn.datasets import load_breast_cancer

    task = get_task("uci_breast_cancer", seed=3)
    meta = json.loads(json.dumps(task.metadata()))  # JSON-able
    x, y = load_breast_cancer(return_X_y=True)
    test_idx = np.array(meta["split"]["test_indices"])
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    mean = np.array(meta["preprocessing"]["mean"])
    std = np.array(meta["preprocessing"]["std"])
    d = task.data()
    np.testing.assert_allclose((x[test_idx] - mean) / std, d.x_test.numpy(), atol=1e-5)
    np.testing.assert_allclose((x[train_idx] - mean) / std, d.x_train.numpy(), atol=1e-5)
    np.testing.assert_array_equal(y[test_idx], d.y_test.numpy())


def test_uci_seed_changes_split():
    a = get_task("uci_breast_cancer", seed=0).metadata()["split"]["test_indices"]
    b = get_task("uci_breast_cancer", seed=1).metadata()["split"]["test_indices"]
    assert a == get_task("uci_breast_cancer", seed=0).metadata()["split"]["test_indices"]
    assert a != b


# ------------------------------------------------------------ loss / metrics
def test_loss_is_mean_cross_entropy_per_network():
    task = UCIBreastCancer()
    logits = torch.randn(4, 9, 2)
    y = torch.randint(0, 2, (9,))
    expected = torch.stack([F.cross_entropy(logits[i], y) for i in range(4)])
    torch.testing.assert_close(task.loss(logits, y), expected)
    y_per_net = torch.randint(0, 2, (4, 9))
    expected = torch.stack([F.cross_entropy(logits[i], y_per_net[i]) for i in range(4)])
    torch.testing.assert_close(task.loss(logits, y_per_net), expected)


def test_evaluate_matches_one_network_at_a_time():
    task = get_task("uci_breast_cancer")
    flat = _random_nets(UCI_SPEC, 5)
    res = task.evaluate(UCI_SPEC, flat, split="test")
    chunked = task.evaluate(UCI_SPEC, flat, split="test", batch_size=7)
    x, y = task.data().x_test, task.data().y_test
    for i, net in enumerate(UCI_SPEC.to_sequentials(flat)):
        with torch.no_grad():
            logits = net(x)
        assert res.accuracy[i].item() == pytest.approx((logits.argmax(1) == y).float().mean().item())
        assert res.loss[i].item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    torch.testing.assert_close(chunked.accuracy, res.accuracy)
    torch.testing.assert_close(chunked.loss, res.loss)


def test_loss_fn_full_batch_and_minibatch():
    task = get_task("uci_breast_cancer")
    flat = _random_nets(UCI_SPEC, 3).requires_grad_(True)
    fn = task.loss_fn(UCI_SPEC)
    full = fn(flat)
    torch.testing.assert_close(full.detach(), task.evaluate(UCI_SPEC, flat.detach(), "train").loss)
    full.sum().backward()
    assert flat.grad is not None and flat.grad.abs().sum() > 0
    a = task.loss_fn(UCI_SPEC, batch_size=16, generator=torch.Generator().manual_seed(0))
    b = task.loss_fn(UCI_SPEC, batch_size=16, generator=torch.Generator().manual_seed(0))
    first = a(flat.detach())
    torch.testing.assert_close(first, b(flat.detach()))  # same generator, same minibatch
    assert not torch.equal(first, a(flat.detach()))  # a fresh minibatch per call


# ------------------------------------------------------------------ Gaussian
def test_gaussian_task_has_no_data():
    task = get_task("gaussian")
    assert isinstance(task, GaussianTask)
    assert task.has_data is False and task.n_classes is None
    task.check_spec(MLPSpec((30, 16, 16, 2)))  # any architecture
    with pytest.raises(RuntimeError, match="has no data"):
        task.data()
    with pytest.raises(RuntimeError, match="has no data"):
        task.loss_fn(UCI_SPEC)
    assert json.loads(json.dumps(task.metadata()))["has_data"] is False


# --------------------------------------------------------------- torchvision
def test_missing_data_says_where_torchvision_looks(tmp_path):
    task = get_task("mnist", data_root=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError) as err:
        task.data()
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "download=True" in msg and "data_root" in msg


@needs_mnist
def test_mnist_loads_and_normalises():
    task = get_task("mnist", data_root=str(DATA_ROOT), download=False)
    d = task.data()
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.y_train.min() == 0 and d.y_train.max() == 9
    # (x/255 - 0.1307) / 0.3081: the training set becomes ~ zero mean, unit std
    assert abs(d.x_train.mean().item()) < 1e-3 and abs(d.x_train.std().item() - 1) < 1e-3
    assert d.x_train.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    meta = json.loads(json.dumps(task.metadata()))
    assert meta["preprocessing"]["mean"] == 0.1307 and meta["preprocessing"]["std"] == 0.3081


@needs_mnist
def test_permuted_mnist_is_a_fixed_pixel_permutation():
    mnist = get_task("mnist", data_root=str(DATA_ROOT), download=False).data()
    task = get_task("mnist_permuted", data_root=str(DATA_ROOT), download=False)
    perm = torch.tensor(task.metadata()["preprocessing"]["permute"]["perm"])
    assert sorted(perm.tolist()) == list(range(784)) and not torch.equal(perm, torch.arange(784))
    d = task.data()
    torch.testing.assert_close(d.x_test, mnist.x_test[:, perm])
    assert torch.equal(d.y_train, mnist.y_train)


@pytest.mark.parametrize("name,folder", [("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_other_torchvision_tasks(name, folder):
    if not _has_raw(folder):
        pytest.skip(f"{name}: raw files not found in {DATA_ROOT / folder / 'raw'} (offline machine)")
    d = get_task(name, data_root=str(DATA_ROOT), download=False).data()
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
