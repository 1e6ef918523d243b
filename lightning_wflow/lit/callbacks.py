"""Callbacks: sample files and sample statistics in TensorBoard (rank zero writes)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from ..weights import MLPSpec, save_samples

__all__ = ["SampleWriter", "WeightMeanHistogram", "tensorboard_writer"]


def tensorboard_writer(trainer: Trainer):
    """The ``SummaryWriter`` of the first TensorBoard logger, or ``None``."""
    for logger in trainer.loggers:
        exp = getattr(logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_histogram"):
            return exp
    return None


def run_dir(trainer: Trainer) -> Path:
    """The run's log directory (``logs/<name>/version_<n>``), or ``default_root_dir``."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class SampleWriter(BasePredictionWriter):
    """Writes the networks drawn by ``predict`` to one safetensors sample file.

    Args:
        output: file to write; default ``<run log dir>/samples.safetensors``.
    """

    def __init__(self, output: str | None = None):
        super().__init__(write_interval="epoch")
        self.output = output
        self.last_path: Path | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        idx = torch.cat([p["index"] for p in predictions]).to(pl_module.device)
        w = torch.cat([p["weights"] for p in predictions]).to(pl_module.device)
        if trainer.world_size > 1:
            # DistributedSampler pads with repeats: gather, then keep one row per index
            idx = trainer.strategy.all_gather(idx).flatten()
            w = trainer.strategy.all_gather(w).flatten(0, 1)
        order = torch.argsort(idx)
        idx, w = idx[order], w[order]
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep[1:] = idx[1:] != idx[:-1]
        w = w[keep]
        # trainer.log_dir is a collective under DDP: every rank asks
        path = Path(self.output) if self.output else run_dir(trainer) / "samples.safetensors"
        if trainer.is_global_zero:
            sizes = pl_module.sampling.layer_sizes or pl_module.spec.layer_sizes
            spec = MLPSpec(tuple(sizes), pl_module.spec.activation)
            self.last_path = save_samples(path, spec, w.cpu(), pl_module.sample_metadata())
            rank_zero_info(f"wrote {w.shape[0]} sampled networks to {os.fspath(self.last_path)}")


class WeightMeanHistogram(Callback):
    """After fitting and testing, histograms of each sampled network's mean weight (Figure 7.1).

    Draws ``n_samples`` networks for every noise scale in ``epsilons`` (0 = deterministic)
    and logs ``samples/weight_mean_eps{e}`` histograms, their mean and std as scalars, and
    one matplotlib figure overlaying them.

    Args:
        n_samples: networks per noise scale.
        steps: Euler steps.
        epsilons: noise scales to compare.
    """

    def __init__(self, n_samples: int = 100, steps: int = 100, epsilons: list[float] = [0.0, 0.05]):
        if n_samples < 2:
            raise ValueError(f"WeightMeanHistogram.n_samples must be >= 2, got {n_samples}")
        if steps < 1:
            raise ValueError(f"WeightMeanHistogram.steps must be >= 1, got {steps}")
        if any(e < 0 for e in epsilons):
            raise ValueError(f"WeightMeanHistogram.epsilons must be >= 0, got {epsilons}")
        self.n_samples, self.steps, self.epsilons = n_samples, steps, list(epsilons)
        self.results: dict[float, torch.Tensor] = {}

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._run(trainer, pl_module)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._run(trainer, pl_module)

    def _run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for eps in self.epsilons:
            cfg = pl_module.sampling.replace(n_samples=self.n_samples, steps=self.steps, epsilon=eps,
                                             guidance_scale=0.0, layer_sizes=None)
            self.results[eps] = pl_module.sample(config=cfg).mean(dim=1).cpu()
        pl_module.results["weight_means"] = {
            f"eps{eps:g}": {"mean": float(m.mean()), "std": float(m.std())} for eps, m in self.results.items()
        }
        writer = tensorboard_writer(trainer)
        if not trainer.is_global_zero or writer is None:
            return
        step = trainer.global_step
        for eps, means in self.results.items():
            writer.add_histogram(f"samples/weight_mean_eps{eps:g}", means, step)
            writer.add_scalar(f"samples/weight_mean_eps{eps:g}/mean", means.mean().item(), step)
            writer.add_scalar(f"samples/weight_mean_eps{eps:g}/std", means.std().item(), step)
        writer.add_figure("samples/weight_mean_histogram", self._figure(), step)
        writer.flush()

    def _figure(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for eps, means in self.results.items():
            label = "deterministic" if eps == 0 else f"stochastic (eps={eps:g})"
            ax.hist(means.numpy(), bins=30, alpha=0.6, label=label)
        ax.set_xlabel("mean of the sampled network's weights")
        ax.set_ylabel("count")
        ax.legend()
        fig.tight_layout()
        return fig
