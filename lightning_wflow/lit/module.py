"""FlowMatchingModule: thin Lightning glue around the velocity field and the flow math.

The math (geometry, prior, coupling, path, solvers, guidance, likelihood) lives in
``lightning_wflow.geometry`` and ``lightning_wflow.flow``; this module only wires it to
training, validation, sampling and checkpoints.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

from ..flow import COUPLINGS as _COUPLINGS
from ..flow import (
    BetaTimeSampler,
    GaussianPrior,
    LossGuidance,
    NoiseConfig,
    SpherePrior,
    UniformTimeSampler,
    integrate,
    make_coupling,
)
from ..geometry import make_geometry
from ..models import MLPVelocityField, RelationalTransformer
from ..tasks import get_task
from ..weights import MLPSpec
from .config import SamplingConfig, VelocityNetConfig

__all__ = ["GEOMETRIES", "COUPLINGS", "TIME_SAMPLERS", "X1_PARAMETRIZATIONS", "FlowMatchingModule"]

GEOMETRIES = ("euclidean", "normalized", "geometric")
X1_PARAMETRIZATIONS = ("direct", "residual")
COUPLINGS = tuple(_COUPLINGS)
TIME_SAMPLERS = ("beta", "uniform")


class FlowMatchingModule(LightningModule):
    """Flow matching over the weights of one MLP architecture.

    Args:
        layer_sizes: architecture of the networks (linked from ``data.layer_sizes``).
        activation: their activation (linked from ``data.activation``).
        task: base task name (linked from ``data.task``); decides whether the last layer
            is a sphere of radius sqrt(C) (classification) and feeds guidance.
        data_root: where the task's data lives (linked from ``data.data_root``).
        geometry: ``euclidean`` | ``normalized`` | ``geometric``.
        net: velocity field (``kind``: relational transformer or MLP) and its size.
        prior_mean, prior_std: Euclidean prior ``N(mean, std^2 I)``.
        prior_bias_std: std of the Gaussian bias part of the sphere prior.
        sigma: width of the Gaussian conditional path (Euclidean paths) or of the tangent
            noise added to ``x_t`` (geometric paths).
        coupling: ``independent`` | ``ot`` (exact minibatch OT) | ``equivariant`` (each data
            network permuted towards its prior draw by weight matching, equivariant flow
            matching: see :class:`~lightning_wflow.flow.EquivariantCoupling`).
        time_sampler: ``beta`` (Beta(beta_a, beta_b)) | ``uniform``.
        sampling: how networks are drawn (callbacks, ``predict``).
        ema_decay: exponential moving average of the velocity field used for sampling
            (``None``: off).
        x1_parametrization: ``direct`` (the network outputs ``x1_hat``, the reference's
            choice) or ``residual`` (``x1_hat = x_t + net(x_t, t)``: the identity is the
            default near ``t = 1``, where Beta(1, 2) time sampling rarely trains the network
            and the last integration steps rely on ``x1_hat`` most).
        optimizer, lr_scheduler: built from YAML by LightningCLI.
    """

    def __init__(
        self,
        layer_sizes: list[int],
        activation: str = "relu",
        task: str = "gaussian",
        data_root: str | None = None,
        geometry: str = "euclidean",
        net: VelocityNetConfig = VelocityNetConfig(),
        prior_mean: float = 0.0,
        prior_std: float = 1.0,
        prior_bias_std: float = 1.0,
        sigma: float = 1e-3,
        coupling: str = "independent",
        time_sampler: str = "beta",
        beta_a: float = 1.0,
        beta_b: float = 2.0,
        sampling: SamplingConfig = SamplingConfig(),
        ema_decay: float | None = None,
        x1_parametrization: str = "direct",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        for name, value, allowed in (
            ("geometry", geometry, GEOMETRIES),
            ("coupling", coupling, COUPLINGS),
            ("time_sampler", time_sampler, TIME_SAMPLERS),
            ("x1_parametrization", x1_parametrization, X1_PARAMETRIZATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"model.{name} must be one of {list(allowed)}, got {value!r}")
        if sigma < 0:
            raise ValueError(f"model.sigma must be >= 0, got {sigma}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"model.ema_decay must be in (0, 1) or null, got {ema_decay}")
        self.spec = MLPSpec(tuple(layer_sizes), activation)
        self.task_name = task
        self.data_root = data_root
        self.task = get_task(task, data_root=data_root)
        self.last_layer_sphere = self.task.n_classes is not None
        self.geometry_name = geometry
        self.geometry = make_geometry(geometry, self.spec, last_layer_sphere=self.last_layer_sphere)
        self.net_config = net
        if net.kind == "mlp":
            self.net = MLPVelocityField(
                list(layer_sizes), net.d_model, net.n_layers, net.n_time_freq, net.dropout,
                edge_scaling=net.edge_scaling,
            )
        else:
            self.net = RelationalTransformer(
                list(layer_sizes), net.d_model, net.n_layers, net.n_heads, net.n_time_freq, net.dropout,
                edge_scaling=net.edge_scaling,
            )
        self.ema = (
            AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            if ema_decay is not None
            else None
        )
        self.prior_mean, self.prior_std, self.prior_bias_std = prior_mean, prior_std, prior_bias_std
        self.prior = self.make_prior(self.spec)
        self.sigma = sigma
        self.x1_parametrization = x1_parametrization
        # torchcfm's Gaussian conditional path N((1 - t) x0 + t x1, sigma^2) for straight paths
        self.cfm = ConditionalFlowMatcher(sigma=sigma)
        self.coupling = make_coupling(coupling)
        self.time_sampler = BetaTimeSampler(beta_a, beta_b) if time_sampler == "beta" else UniformTimeSampler()
        self.sampling = sampling
        #: results of the evaluation callbacks, written to results.json after ``test``
        self.results: dict = {}
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        # plain types only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["net", "sampling", "optimizer", "lr_scheduler"])
        self.hparams["layer_sizes"] = list(layer_sizes)
        self.hparams["net"] = asdict(net)
        self.hparams["sampling"] = asdict(sampling)

    # ------------------------------------------------------------------ pieces
    def make_prior(self, spec: MLPSpec):
        if self.geometry_name == "euclidean":
            return GaussianPrior(spec, mean=self.prior_mean, std=self.prior_std)
        return SpherePrior(spec, bias_std=self.prior_bias_std, last_layer_sphere=self.last_layer_sphere)

    def sampling_net(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def predict_x1(self, x_t: Tensor, t: Tensor, net: torch.nn.Module | None = None,
                   layer_sizes: tuple[int, ...] | None = None, geometry=None) -> Tensor:
        """x1-prediction, projected onto the manifold for the geometric flow."""
        geometry = geometry or self.geometry
        x1_hat = (net or self.net)(x_t, t, layer_sizes)
        if self.x1_parametrization == "residual":
            x1_hat = x_t + x1_hat
        return geometry.projx(x1_hat) if self.geometry_name == "geometric" else x1_hat

    def flow_matching_loss(self, x1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Conditional flow matching loss with x1-prediction, in the geometry's metric."""
        B = x1.shape[0]
        x0 = self.prior.sample(B, generator=generator, device=x1.device).to(x1.dtype)
        x0, x1 = self.coupling(x0, x1, self.geometry)
        t = self.time_sampler.sample(B, generator=generator, device=x1.device).to(x1.dtype)
        if self.geometry_name == "geometric":
            x_t = self.geometry.interpolate(x0, x1, t)
            if self.sigma > 0:
                x_t = self.geometry.expmap(x_t, self.sigma * self.geometry.random_tangent(x_t, generator))
        else:
            eps = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
            x_t = self.cfm.sample_xt(x0, x1, t, eps)
        return self.geometry.loss(self.predict_x1(x_t, t), x1).mean()

    # ---------------------------------------------------------------- training
    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = self.flow_matching_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        # a fixed generator per batch: val/loss is comparable across epochs
        gen = torch.Generator(device=batch.device).manual_seed(10_000 + batch_idx)
        loss = self.flow_matching_loss(batch, generator=gen)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch.shape[0])
        return loss

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        gen = torch.Generator(device=batch.device).manual_seed(20_000 + batch_idx)
        loss = self.flow_matching_loss(batch, generator=gen)
        self.log("test/loss", loss, sync_dist=True, batch_size=batch.shape[0])
        return loss

    def on_test_start(self) -> None:
        self.results = {}

    def on_test_end(self) -> None:
        """Write the evaluation callbacks' results as results.json and results.md (rank 0)."""
        from ..evaluation import write_results
        from .callbacks import run_dir

        folder = run_dir(self.trainer)  # a collective under DDP: every rank asks
        if not self.trainer.is_global_zero:
            return

        test_loss = self.trainer.callback_metrics.get("test/loss")
        results = {"flow": {"task": self.task_name, "geometry": self.geometry_name,
                            "layer_sizes": list(self.spec.layer_sizes), "global_step": int(self.trainer.global_step),
                            "test_loss": float(test_loss) if test_loss is not None else float("nan")},
                   **self.results}
        write_results(folder / "results.json", folder / "results.md", results,
                      title=f"{self.task_name} / {self.geometry_name} flow")

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.net.parameters())
        if self.lr_scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.lr_scheduler_factory(opt), "interval": "step"}}

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        weights = getattr(dm, "train_weights", None)
        if self.geometry_name != "euclidean" and weights is not None:
            ok, why = self.geometry.check(weights[:256].to(self.device))
            if not ok:
                raise ValueError(
                    f"model.geometry={self.geometry_name!r} needs canonical weights on the product of "
                    f"spheres, but the training data is not: {why}. Set data.canonicalize: true."
                )

    # ---------------------------------------------------------------- sampling
    def sample(
        self,
        n: int | None = None,
        config: SamplingConfig | None = None,
        indices: Tensor | None = None,
    ) -> Tensor:
        """Draw networks from the flow.

        Args:
            n: number of networks (default ``config.n_samples``).
            config: sampling settings (default ``self.sampling``).
            indices: which of the ``config.n_samples`` seeded draws to integrate; the prior
                draws for all of them come from one generator seeded with ``config.seed``,
                so a subset (e.g. one rank's share under DDP) gives the same networks as
                a single process.

        Returns:
            ``(n, P)`` flat weights of the sampled architecture.
        """
        cfg = config or self.sampling
        n = n or cfg.n_samples
        sizes = tuple(cfg.layer_sizes) if cfg.layer_sizes else self.spec.layer_sizes
        spec = MLPSpec(sizes, self.spec.activation)
        geometry = (
            self.geometry
            if sizes == self.spec.layer_sizes
            else make_geometry(self.geometry_name, spec, last_layer_sphere=self.last_layer_sphere)
        )
        prior = self.prior if sizes == self.spec.layer_sizes else self.make_prior(spec)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        x0 = prior.sample(n, generator=gen, device=torch.device("cpu"))
        if indices is not None:
            x0 = x0[indices.cpu()]
        x0 = x0.to(self.device)
        noise_gen = torch.Generator(device=self.device).manual_seed(
            cfg.seed + 1 + (int(indices[0]) if indices is not None and len(indices) else 0)
        )
        guidance = None
        if cfg.guidance_scale > 0:
            gtask = get_task(cfg.guidance_task or self.task_name, data_root=self.data_root)
            if not gtask.has_data:
                raise ValueError(f"sampling.guidance_scale > 0 needs a task with data; {gtask.name!r} has none")
            loss_fn = gtask.loss_fn(spec, split="train", batch_size=cfg.guidance_batch_size, generator=noise_gen)
            guidance = LossGuidance(loss_fn, scale=cfg.guidance_scale, t_start=cfg.guidance_t_start, t_end=cfg.guidance_t_end)
        net = self.sampling_net()
        was_training = net.training
        net.eval()

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return geometry.velocity_from_x1(x, self.predict_x1(x, t, net, sizes, geometry), t)

        out = []
        try:
            for chunk in x0.split(cfg.batch_size):
                # guidance takes its loss gradient under its own enable_grad
                with torch.no_grad():
                    x1 = integrate(
                        velocity, chunk, geometry, solver=cfg.solver, steps=cfg.steps,
                        noise=NoiseConfig(cfg.epsilon, cfg.noise_t_start, cfg.noise_t_end, cfg.noise_scaling),
                        guidance=guidance, generator=noise_gen,
                    )
                out.append(x1.detach())  # integrate() projects the final state
        finally:
            net.train(was_training)
        return torch.cat(out).clone()

    def sample_metadata(self, config: SamplingConfig | None = None) -> dict:
        """What a sample file records about how it was drawn (see ``weights.io``)."""
        cfg = config or self.sampling
        meta = {
            "task": self.task_name,
            "geometry": self.geometry_name,
            "x1_parametrization": self.x1_parametrization,
            "sampling": asdict(cfg),
            "ema": self.ema is not None,
        }
        if self.task.has_data:
            meta["task_metadata"] = self.task.metadata()
        return meta

    # ----------------------------------------------------------------- predict
    def predict_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        idx = batch[0] if isinstance(batch, (list, tuple)) else batch
        return {"index": idx, "weights": self.sample(config=self.sampling, indices=idx)}

    # ------------------------------------------------------------- checkpoints
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        hp = checkpoint.get("hyper_parameters", {})
        for key, mine in (("layer_sizes", list(self.spec.layer_sizes)), ("geometry", self.geometry_name),
                          ("net", asdict(self.net_config)), ("x1_parametrization", self.x1_parametrization)):
            theirs = hp.get(key)
            if key == "net" and theirs is not None:
                # options added after a checkpoint was written take their defaults, which
                # reproduce the behaviour it was trained with
                theirs = {**asdict(VelocityNetConfig()), **theirs}
            if theirs is not None and (list(theirs) if key == "layer_sizes" else theirs) != mine:
                raise ValueError(
                    f"checkpoint was trained with {key}={theirs} but the config has {key}={mine}; "
                    "use the config the checkpoint was trained with"
                )
