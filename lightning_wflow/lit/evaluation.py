"""Evaluation callbacks: sample quality, steps sweep, loss barriers, likelihoods, posterior
predictive, learned initialisation. Thin glue over ``lightning_wflow.evaluation``,
``lightning_wflow.symmetry`` and ``lightning_wflow.flow``.

Each callback runs at the end of ``fit`` (when ``on_fit_end`` is true) and at the end of
``test``. Under DDP every rank integrates its share of the seeded draws and the shares are
gathered, so every rank holds all samples and computes the same metrics; rank zero logs
figures. Results are collected in ``pl_module.results`` and, after ``test``, written as
``results.json`` and ``results.md`` in the run's log directory (atomically).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from ..evaluation import (
    bma_curve,
    default_ks,
    mean_pairwise_jsd,
    plot_bma,
    plot_histograms,
    plot_init_curves,
    plot_steps_sweep,
    predictive_probs,
    sample_quality,
    train_from_init,
)
from ..flow import log_likelihood
from ..symmetry import canonical_scale, loss_barrier, random_pairs
from ..tasks import get_task
from ..weights import MLPSpec
from .callbacks import tensorboard_writer

__all__ = [
    "EvaluationCallback",
    "LearnedInitialisation",
    "Likelihood",
    "LossBarrier",
    "PosteriorPredictive",
    "SampleQuality",
    "StepsSweep",
    "draw_samples",
]


def draw_samples(trainer: Trainer | None, pl_module, **changes) -> Tensor:
    """All ``n_samples`` networks, each rank integrating a share, gathered on every rank."""
    cfg = pl_module.sampling.replace(**changes)
    world = trainer.world_size if trainer is not None else 1
    if world == 1:
        return pl_module.sample(config=cfg)
    rank = trainer.global_rank
    per = -(-cfg.n_samples // world)
    idx = torch.arange(rank * per, min((rank + 1) * per, cfg.n_samples))
    part = pl_module.sample(config=cfg, indices=idx) if len(idx) else None
    P = MLPSpec(tuple(cfg.layer_sizes or pl_module.spec.layer_sizes)).n_params
    buf = torch.zeros(per, P, device=pl_module.device)
    if part is not None:
        buf[: len(idx)] = part
    gathered = trainer.strategy.all_gather(buf).reshape(world * per, P)
    return gathered[: cfg.n_samples]


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


class EvaluationCallback(Callback, ABC):
    """Base: run :meth:`evaluate` after fit (optional) and after test; log its scalars.

    Args:
        on_fit_end: also evaluate when ``fit`` ends.
        task: task to evaluate on (default: the flow's task).
        name: key of the results and prefix of the logged metrics (default: the class's
            ``name``); give two callbacks of one class different names.
    """

    name = "evaluation"

    def __init__(self, on_fit_end: bool = True, task: str | None = None, name: str | None = None):
        self.run_on_fit_end = on_fit_end
        self.task_name = task
        if name is not None:
            if not name or "/" in name:
                raise ValueError(f"{type(self).__name__}.name must be a non-empty string without '/', got {name!r}")
            self.name = name

    def task(self, pl_module):
        task = get_task(self.task_name or pl_module.task_name, data_root=pl_module.data_root)
        if not task.has_data:
            raise ValueError(f"{type(self).__name__} needs a task with data; {task.name!r} has none (set task:)")
        return task

    @abstractmethod
    def evaluate(self, trainer: Trainer, pl_module) -> dict:
        """Compute this callback's results (plain floats, nested dicts and lists)."""

    def _run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # test runs under inference_mode, which guidance and likelihoods cannot work in
        with torch.inference_mode(False), torch.no_grad():
            results = self.evaluate(trainer, pl_module)
        pl_module.results[self.name] = results
        writer = tensorboard_writer(trainer)
        if trainer.is_global_zero and writer is not None:
            for key, value in _scalars(results, self.name):
                writer.add_scalar(key, value, trainer.global_step)
            writer.flush()

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.run_on_fit_end:
            self._run(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module)

    def add_figure(self, trainer: Trainer, tag: str, figure) -> None:
        writer = tensorboard_writer(trainer)
        if trainer.is_global_zero and writer is not None:
            writer.add_figure(tag, figure, trainer.global_step)
        else:
            import matplotlib.pyplot as plt

            plt.close(figure)


def _scalars(results: dict, prefix: str):
    for key, value in results.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}/{key}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}/{key}", float(value)


class SampleQuality(EvaluationCallback):
    """Test accuracy and loss (mean +- std) of sampled networks against the zoo's targets,
    and functional diversity (mean pairwise Jensen-Shannon divergence on test inputs).

    Logged as ``samples/flow/accuracy_mean``, ``samples/flow/loss_mean``,
    ``samples/flow/diversity``, ``samples/target/accuracy_mean``, ... For canonical geometries the samples' loss is the
    loss of canonical weights (last layer at norm sqrt(C), a temperature); the targets report
    both their original and their canonical loss.

    Args:
        n_samples: networks to draw (default: ``model.sampling.n_samples``).
        n_diversity_inputs: test inputs used for the diversity.
        sampling overrides: ``steps``, ``epsilon``, ``guidance_scale``, ``layer_sizes``.
    """

    name = "samples"

    def __init__(
        self,
        n_samples: int | None = None,
        steps: int | None = None,
        epsilon: float | None = None,
        guidance_scale: float | None = None,
        layer_sizes: list[int] | None = None,
        n_diversity_inputs: int = 1000,
        on_fit_end: bool = True,
        task: str | None = None,
        name: str | None = None,
    ):
        super().__init__(on_fit_end, task, name)
        if n_samples is not None and n_samples < 2:
            raise ValueError(f"SampleQuality.n_samples must be >= 2, got {n_samples}")
        if steps is not None:
            _positive("SampleQuality.steps", steps)
        if epsilon is not None and epsilon < 0:
            raise ValueError(f"SampleQuality.epsilon must be >= 0, got {epsilon}")
        if guidance_scale is not None and guidance_scale < 0:
            raise ValueError(f"SampleQuality.guidance_scale must be >= 0, got {guidance_scale}")
        _positive("SampleQuality.n_diversity_inputs", n_diversity_inputs)
        self.changes = {k: v for k, v in dict(n_samples=n_samples, steps=steps, epsilon=epsilon,
                                                guidance_scale=guidance_scale, layer_sizes=layer_sizes).items()
                        if v is not None}
        self.n_diversity_inputs = n_diversity_inputs
        self.samples: Tensor | None = None

    def evaluate(self, trainer, pl_module) -> dict:
        task = self.task(pl_module)
        changes = dict(self.changes)
        if self.task_name and "guidance_task" not in changes:
            changes["guidance_task"] = self.task_name
        flat = draw_samples(trainer, pl_module, **changes)
        self.samples = flat
        sizes = changes.get("layer_sizes") or pl_module.spec.layer_sizes
        spec = MLPSpec(tuple(sizes), pl_module.spec.activation)
        data = task.data()
        x, y = data.x_test.to(flat.device), data.y_test.to(flat.device)
        q = sample_quality(spec, flat, x, y, batch_size=2048)
        probs = predictive_probs(spec, flat, x[: self.n_diversity_inputs])
        out = {"flow": {**q.summary(), "diversity": float(mean_pairwise_jsd(probs))}}
        target = _target_weights(trainer)
        if target is not None and target.shape[1] == spec.n_params and self.task_name in (None, pl_module.task_name):
            target = target.to(flat.device)
            tq = sample_quality(spec, target, x, y, batch_size=2048)
            tout = {**tq.summary(), "diversity": float(mean_pairwise_jsd(predictive_probs(spec, target, x[: self.n_diversity_inputs])))}
            if pl_module.geometry_name != "euclidean":
                canon = canonical_scale(spec, target, last_layer_sphere=pl_module.last_layer_sphere)
                tout["canonical_loss_mean"] = float(sample_quality(spec, canon.flat, x, y, batch_size=2048).loss.mean())
            out["target"] = tout
        return out


def _target_weights(trainer) -> Tensor | None:
    """Final checkpoints of the zoo's runs (the "Target" row), unaligned and raw."""
    dm = getattr(trainer, "datamodule", None)
    zoo = getattr(dm, "zoo", None) if dm is not None else None
    if zoo is None or getattr(zoo, "target_accuracy", None) is None:
        return None
    return zoo.final.float()


class StepsSweep(EvaluationCallback):
    """Sample quality against the number of integration steps, with and without guidance
    (reference Figure 7.3), as ``samples_sweep/...`` scalars and one figure.

    Args:
        steps: integration steps to try.
        guidance_scale: lambda of the guided curve (0: unguided only; results ``guided_steps<s>``),
            or a list of lambdas, one guided curve each (results ``guided_lambda<lambda>_steps<s>``).
        n_samples: networks per point.
    """

    name = "steps_sweep"

    def __init__(self, steps: list[int] = [8, 16, 32, 64, 128, 256], guidance_scale: float | list[float] = 0.0,
                 n_samples: int = 32, on_fit_end: bool = True, task: str | None = None,
                 name: str | None = None):
        super().__init__(on_fit_end, task, name)
        if not steps or any(s < 1 for s in steps):
            raise ValueError(f"StepsSweep.steps must be a non-empty list of integers >= 1, got {steps}")
        single = isinstance(guidance_scale, (int, float))
        scales = [guidance_scale] if single else list(guidance_scale)
        if not scales or any(s < 0 for s in scales):
            raise ValueError(f"StepsSweep.guidance_scale must be a number >= 0 or a non-empty list of them, "
                             f"got {guidance_scale}")
        _positive("StepsSweep.n_samples", n_samples)
        self.steps, self.guidance_scale, self.n_samples = list(steps), guidance_scale, n_samples
        #: result-key prefix -> lambda: one guided curve per positive lambda
        self.variants = {"unguided": 0.0, **{"guided" if single else f"guided_lambda{s:g}": float(s)
                                             for s in scales if s > 0}}

    def evaluate(self, trainer, pl_module) -> dict:
        task = self.task(pl_module)
        data = task.data()
        variants = self.variants
        acc, loss, out = {}, {}, {}
        spec = MLPSpec(tuple(pl_module.sampling.layer_sizes or pl_module.spec.layer_sizes), pl_module.spec.activation)
        guide = {"guidance_task": self.task_name} if self.task_name else {}
        for label, lam in variants.items():
            accs, losses = [], []
            for s in self.steps:
                flat = draw_samples(trainer, pl_module, n_samples=self.n_samples, steps=s, guidance_scale=lam, **guide)
                q = sample_quality(spec, flat, data.x_test.to(flat.device), data.y_test.to(flat.device))
                accs.append(q.accuracy.cpu())
                losses.append(q.loss.cpu())
                out[f"{label}_steps{s}"] = q.summary()
            acc[label], loss[label] = torch.stack(accs), torch.stack(losses)
        self.add_figure(trainer, "samples/steps_sweep", plot_steps_sweep(self.steps, acc, loss))
        return out


class LossBarrier(EvaluationCallback):
    """Midpoint loss barriers between random pairs of zoo networks and of samples
    (reference Figure 7.2), with histograms.

    Args:
        n_pairs: pairs per population.
        n_points: points along each segment (3 = midpoint barrier).
        n_samples: networks sampled from the flow.
    """

    name = "barrier"

    def __init__(self, n_pairs: int = 100, n_points: int = 3, n_samples: int = 32, on_fit_end: bool = True,
                 task: str | None = None, name: str | None = None):
        super().__init__(on_fit_end, task, name)
        _positive("LossBarrier.n_pairs", n_pairs)
        _positive("LossBarrier.n_samples", n_samples)
        if n_points < 3:
            raise ValueError(f"LossBarrier.n_points must be >= 3, got {n_points}")
        self.n_pairs, self.n_points, self.n_samples = n_pairs, n_points, n_samples

    def _barrier(self, spec, flat, loss_fn, seed) -> Tensor:
        m = min(self.n_pairs, flat.shape[0] * (flat.shape[0] - 1) // 2)
        pairs = random_pairs(flat.shape[0], m, generator=torch.Generator().manual_seed(seed)).to(flat.device)
        return loss_barrier(spec, flat[pairs[:, 0]], flat[pairs[:, 1]], loss_fn, self.n_points).barrier.cpu()

    def evaluate(self, trainer, pl_module) -> dict:
        task = self.task(pl_module)
        loss_fn = task.loss_fn(pl_module.spec, split="train")
        values = {"samples": self._barrier(pl_module.spec, draw_samples(trainer, pl_module, n_samples=self.n_samples), loss_fn, 0)}
        dm = getattr(trainer, "datamodule", None)
        zoo = getattr(dm, "train_weights", None)
        if zoo is not None and zoo.shape[0] >= 2:
            values["zoo"] = self._barrier(pl_module.spec, zoo.to(pl_module.device).float(), loss_fn, 1)
        self.add_figure(trainer, "barrier/histogram", plot_histograms(values, "midpoint loss barrier"))
        writer = tensorboard_writer(trainer)
        if trainer.is_global_zero and writer is not None:
            for k, v in values.items():
                writer.add_histogram(f"barrier/{k}", v, trainer.global_step)
        return {k: {"mean": float(v.mean()), "std": float(v.std(correction=0))} for k, v in values.items()}


class Likelihood(EvaluationCallback):
    """Negative log-likelihood of held-out zoo networks and of samples under the flow.

    Args:
        estimator: ``exact`` | ``hutchinson``.
        n_networks: networks of each population.
        steps: integration steps of the backward ODE.
        n_probes: Hutchinson probes.
    """

    name = "likelihood"

    def __init__(self, estimator: str = "hutchinson", n_networks: int = 16, steps: int = 20, n_probes: int = 1,
                 on_fit_end: bool = True, task: str | None = None, name: str | None = None):
        super().__init__(on_fit_end, task, name)
        if estimator not in ("exact", "hutchinson"):
            raise ValueError(f"Likelihood.estimator must be one of ['exact', 'hutchinson'], got {estimator!r}")
        for n, v in (("n_networks", n_networks), ("steps", steps), ("n_probes", n_probes)):
            _positive(f"Likelihood.{n}", v)
        self.estimator, self.n_networks, self.steps, self.n_probes = estimator, n_networks, steps, n_probes

    def task(self, pl_module):  # likelihoods need no task data
        return None

    def evaluate(self, trainer, pl_module) -> dict:
        net = pl_module.sampling_net()
        geometry = pl_module.geometry

        def velocity(x, t):
            return geometry.velocity_from_x1(x, pl_module.predict_x1(x, t, net), t)

        pops = {"samples": draw_samples(trainer, pl_module, n_samples=self.n_networks)}
        dm = getattr(trainer, "datamodule", None)
        val = getattr(dm, "val_weights", None)
        if val is not None and len(val):
            pops["heldout"] = val[: self.n_networks].to(pl_module.device).float()
        out = {}
        gen = torch.Generator(device=pl_module.device).manual_seed(0)
        for name, x1 in pops.items():
            with torch.enable_grad():
                res = log_likelihood(velocity, x1, geometry, pl_module.prior, steps=self.steps,
                                     estimator=self.estimator, n_probes=self.n_probes, generator=gen)
            out[name] = {"nll_mean": float(-res.log_prob.mean()), "nll_std": float(res.log_prob.std(correction=0)),
                         "nll_per_dim_mean": float(-res.log_prob_per_dim.mean())}
        return out


class PosteriorPredictive(EvaluationCallback):
    """Bayesian model averaging over 1, 2, 4, ... K samples: accuracy, NLL and expected
    calibration error, against the same for an ensemble of target networks.

    Args:
        n_samples: K, networks averaged at most.
        n_bins: calibration bins.
    """

    name = "bma"

    def __init__(self, n_samples: int = 16, n_bins: int = 15, on_fit_end: bool = True, task: str | None = None,
                 name: str | None = None):
        super().__init__(on_fit_end, task, name)
        _positive("PosteriorPredictive.n_samples", n_samples)
        _positive("PosteriorPredictive.n_bins", n_bins)
        self.n_samples, self.n_bins = n_samples, n_bins

    def evaluate(self, trainer, pl_module) -> dict:
        task = self.task(pl_module)
        data = task.data()
        flat = draw_samples(trainer, pl_module, n_samples=self.n_samples)
        x, y = data.x_test.to(flat.device), data.y_test.to(flat.device)
        ks = default_ks(self.n_samples)
        curves = {"samples": bma_curve(predictive_probs(pl_module.spec, flat, x), y, ks, self.n_bins)}
        target = _target_weights(trainer)
        if target is not None:
            target = target[: self.n_samples].to(flat.device)
            curves["target"] = bma_curve(predictive_probs(pl_module.spec, target, x), y,
                                         default_ks(target.shape[0]), self.n_bins)
        self.add_figure(trainer, "bma/curve", plot_bma(curves))
        return {label: {f"k{p.k}": {"accuracy": p.accuracy, "nll": p.nll, "ece": p.ece} for p in pts}
                for label, pts in curves.items()}


class LearnedInitialisation(EvaluationCallback):
    """Train networks on a (target) task starting from flow samples and from the prior, and
    compare test accuracy against steps (averaged over ``n_networks`` runs).

    Args:
        task: the task to train on (default: the flow's task).
        n_networks: networks per initialisation.
        steps, lr, batch_size, optimizer, eval_every: the training run.
    """

    name = "learned_init"

    def __init__(self, task: str | None = None, n_networks: int = 5, steps: int = 200, lr: float = 1e-3,
                 batch_size: int = 128, optimizer: str = "adam", eval_every: int = 20, on_fit_end: bool = True,
                 name: str | None = None):
        super().__init__(on_fit_end, task, name)
        for n, v in (("n_networks", n_networks), ("steps", steps), ("batch_size", batch_size),
                     ("eval_every", eval_every)):
            _positive(f"LearnedInitialisation.{n}", v)
        if lr <= 0:
            raise ValueError(f"LearnedInitialisation.lr must be > 0, got {lr}")
        self.n_networks, self.steps, self.lr = n_networks, steps, lr
        self.batch_size, self.optimizer, self.eval_every = batch_size, optimizer, eval_every

    def evaluate(self, trainer, pl_module) -> dict:
        task = self.task(pl_module)
        data = task.data()
        dev = pl_module.device
        inits = {"flow": draw_samples(trainer, pl_module, n_samples=self.n_networks)}
        # the Gaussian prior of the zoo's networks, with the data module's init settings
        dm = getattr(trainer, "datamodule", None)
        zoo_cfg = getattr(dm, "zoo_config", None)
        mean, std = (zoo_cfg.init_mean, zoo_cfg.init_std) if zoo_cfg is not None else (0.0, pl_module.prior_std)
        gen = torch.Generator().manual_seed(0)
        inits["prior"] = (torch.randn(self.n_networks, pl_module.spec.n_params, generator=gen) * std + mean).to(dev)
        curves = {}
        with torch.enable_grad():
            for label, init in inits.items():
                curves[label] = train_from_init(
                    pl_module.spec, init, data.x_train.to(dev), data.y_train.to(dev), data.x_test.to(dev),
                    data.y_test.to(dev), steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                    optimizer=self.optimizer, eval_every=self.eval_every,
                    generator=torch.Generator(device=dev).manual_seed(1),
                )
        self.add_figure(trainer, "learned_init/curves", plot_init_curves(curves))
        return {label: {"steps": c.steps.tolist(), "accuracy_mean": c.accuracy_mean.tolist(),
                        "final_accuracy": float(c.accuracy_mean[-1]),
                        "first_accuracy_after_start": float(c.accuracy_mean[1]) if len(c.steps) > 1 else float("nan")}
                for label, c in curves.items()}
