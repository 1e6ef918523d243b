"""Reproduce the reference's tables and figures: run the grid of experiment configs, then
write the tables (markdown and CSV) and figures (PNG).

    python -m lightning_wflow.reproduce {toy,uci,mnist,transfer,all} [--out docs/results]
        [--runs logs/reproduce] [--max-steps N] [--tiny] [--dry-run] [--report-only]
        [--data-root PATH] [--only NAME ...] [--transfer-task auto|mnist_permuted|fashion_mnist|kmnist]

Every run has a stable folder ``<runs>/<name>/version_0`` (TensorBoard events, checkpoints,
``results.json``), its effective config in ``<runs>/<name>/reproduce.yaml``. A run whose ``results.json`` exists
is skipped; a run whose training finished (``fit_done.json``) is only tested. The transfer runs
evaluate the checkpoints of the MNIST flows with the callbacks of ``configs/transfer_*.yaml``
on the transfer task (Fashion-MNIST when its files are under the data root, else ``mnist_permuted``)
(training the MNIST flow first when its checkpoint is missing), as the reference guides and
widens the same flows. Evaluation callbacks run at ``test`` only (``on_fit_end`` is turned off).
``--tiny`` shrinks every run (a few steps, tiny zoos and velocity fields, toy-sized evaluations)
for tests; use a separate ``--runs`` folder for it.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .utils import atomic_write_json, atomic_write_text

__all__ = ["GROUPS", "Options", "Run", "effective_config", "grid", "main", "run_grid"]

# a fixed name: the module also runs as __main__
log = logging.getLogger("lightning_wflow.reproduce")

GROUPS = ("toy", "uci", "mnist", "transfer")
GEOMETRIES = ("euclidean", "normalized", "geometric")
UCI_VARIANTS = ("", "_aligned", "_aligned_ot")
#: UCI runs with the MLP velocity field (``model.net.kind: mlp``, not in the reference): aligned only
UCI_MLP = tuple(f"uci_{g}_aligned_mlp" for g in GEOMETRIES)
MNIST_VARIANTS = ("", "_ot")
#: velocity fields of the MNIST grid (run and config name infix): the relational transformer
#: (the reference's) and the MLP over the flat weights (``model.net.kind: mlp``, not in the reference)
MNIST_NETS = ("", "_mlp")
#: MNIST runs beyond the reference's grid, each its own row of the MNIST table:
#: ``{name: (row label, coupling)}``
MNIST_EXTRA: dict[str, tuple[str, str]] = {
    "mnist_geometric_equivariant": ("Geometric, fan_in edge scaling + equivariant coupling", "equivariant"),
    "mnist_geometric_long": ("Geometric, 5,000 iterations", "independent"),
}
#: MNIST flows beyond the reference's three whose checkpoints also run the guided and
#: learned-initialisation transfer experiments: ``{flow: row label}`` (run ``mnist_<flow>``)
TRANSFER_EXTRA: dict[str, str] = {f"{g}_mlp": f"{g.capitalize()}, MLP field" for g in GEOMETRIES}
#: relational-transformer flows beyond the reference's three that also sample the wider
#: 784-32-10 network: ``{flow: row label}`` (run ``mnist_<flow>``)
WIDE_EXTRA: dict[str, str] = {"geometric_long": MNIST_EXTRA["mnist_geometric_long"][0]}
#: The transfer task the transfer configs name (offline: MNIST with a fixed pixel permutation)
#: and the reference's, used instead whenever its files are under the data root.
OFFLINE_TRANSFER_TASK = "mnist_permuted"
REFERENCE_TRANSFER_TASK = "fashion_mnist"
TRANSFER_TASKS = ("auto", "mnist_permuted", "fashion_mnist", "kmnist")
#: Callbacks that evaluate after ``test`` (and, unless turned off, after ``fit``).
EVALUATION_CALLBACKS = frozenset(
    {"SampleQuality", "StepsSweep", "LossBarrier", "Likelihood", "PosteriorPredictive", "LearnedInitialisation"}
)
#: The subfolder of ``<runs>/<name>`` that the TensorBoard logger writes to.
VERSION = "version_0"

# ------------------------------------------------------------------------ tiny settings
TINY_TRAINER = {"max_steps": 4, "val_check_interval": 2, "check_val_every_n_epoch": None,
                "limit_val_batches": 1, "limit_test_batches": 1, "log_every_n_steps": 1}
TINY_ZOO = {"n_runs": 4, "epochs": 2, "burn_in_epochs": 1, "val_runs": 1, "chunk_runs": 4, "batch_size": 4}
TINY_VISION_ZOO = {"zoo_batch_size": 1000}  # 60 iterations an epoch instead of 469
TINY_GAUSSIAN = {"n_samples": 32, "val_runs": 4, "batch_size": 4}
TINY_NET = {"d_model": 8, "n_layers": 1}
TINY_SAMPLING = {"n_samples": 4, "batch_size": 4, "steps": 3}
TINY_CALLBACKS = {
    "SampleQuality": {"n_samples": 4, "steps": 3, "n_diversity_inputs": 50},
    "StepsSweep": {"steps": [2, 4], "n_samples": 3},
    "LossBarrier": {"n_pairs": 3, "n_samples": 3},
    "Likelihood": {"n_networks": 2, "steps": 2},
    "PosteriorPredictive": {"n_samples": 4},
    "LearnedInitialisation": {"n_networks": 2, "steps": 4, "eval_every": 2},
    "WeightMeanHistogram": {"n_samples": 4, "steps": 3},
}
TINY_TARGET_ZOO = {"n_runs": 2, "epochs": 2, "burn_in_epochs": 1, "batch_size": 1000}


# -------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class Run:
    """One experiment of the grid.

    Attributes:
        name: run folder and table key.
        group: ``toy`` | ``uci`` | ``mnist`` | ``transfer``.
        config: YAML file under the configs folder (a zoo config for ``kind="zoo"``).
        callbacks_from: take ``trainer.callbacks`` and ``model.sampling`` from this YAML.
        ckpt_from: evaluate the checkpoint of this run instead of training.
        callback_changes: ``{callback class name: {init arg: value}}`` applied on top.
        kind: ``flow`` (fit + test) or ``zoo`` (build a zoo, report its targets).
    """

    name: str
    group: str
    config: str
    callbacks_from: str | None = None
    ckpt_from: str | None = None
    callback_changes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kind: str = "flow"


def grid() -> list[Run]:
    """Every run of the reproduction, in execution order."""
    runs = [Run("gaussian_euclidean", "toy", "gaussian_euclidean.yaml")]
    runs += [Run(f"uci_{g}{v}", "uci", f"uci_{g}{v}.yaml") for g in GEOMETRIES for v in UCI_VARIANTS]
    runs += [Run(name, "uci", f"{name}.yaml") for name in UCI_MLP]
    runs += [Run(f"mnist_{g}{n}{v}", "mnist", f"mnist_{g}{n}{v}.yaml")
             for n in MNIST_NETS for g in GEOMETRIES for v in MNIST_VARIANTS]
    runs += [Run(name, "mnist", f"{name}.yaml") for name in MNIST_EXTRA]
    runs.append(Run("transfer_target", "transfer", "zoo/transfer.yaml", kind="zoo"))
    for g in GEOMETRIES:
        runs.append(Run(f"transfer_guided_{g}", "transfer", f"mnist_{g}.yaml", "transfer_guided.yaml", f"mnist_{g}"))
    runs.append(Run("transfer_init_geometric", "transfer", "mnist_geometric.yaml", "transfer_init.yaml",
                    "mnist_geometric"))
    # the MLP velocity field transfers by guidance and as an initialisation, not to other widths
    for flow in TRANSFER_EXTRA:
        runs.append(Run(f"transfer_guided_{flow}", "transfer", f"mnist_{flow}.yaml", "transfer_guided.yaml",
                        f"mnist_{flow}"))
        runs.append(Run(f"transfer_init_{flow}", "transfer", f"mnist_{flow}.yaml", "transfer_init.yaml",
                        f"mnist_{flow}"))
    for g in GEOMETRIES:
        runs.append(Run(f"transfer_wide_{g}", "transfer", f"mnist_{g}.yaml", "transfer_wide.yaml", f"mnist_{g}"))
        runs.append(Run(f"transfer_wide_guided_{g}", "transfer", f"mnist_{g}.yaml", "transfer_wide.yaml",
                        f"mnist_{g}", {"SampleQuality": {"guidance_scale": 0.1}}))
    for flow in WIDE_EXTRA:
        runs.append(Run(f"transfer_wide_{flow}", "transfer", f"mnist_{flow}.yaml", "transfer_wide.yaml",
                        f"mnist_{flow}"))
    return runs


@dataclass(frozen=True)
class Options:
    """How the grid runs.

    Attributes:
        configs: folder of the experiment YAML files.
        runs: folder of the run folders.
        max_steps: override of every run's ``trainer.max_steps``.
        tiny: shrink every run (tests).
        data_root: override of ``data.data_root`` (torchvision tasks).
    """

    configs: Path
    runs: Path
    max_steps: int | None = None
    tiny: bool = False
    data_root: str | None = None
    transfer_task: str = "auto"


def transfer_task(opts: Options) -> str:
    """The task the transfer runs use: ``opts.transfer_task``, or with ``auto`` Fashion-MNIST
    (the reference's) when torchvision's raw files for it are under the data root, else the
    offline ``mnist_permuted``."""
    if opts.transfer_task not in TRANSFER_TASKS:
        raise ValueError(f"transfer task must be one of {list(TRANSFER_TASKS)}, got {opts.transfer_task!r}")
    if opts.transfer_task != "auto":
        return opts.transfer_task
    from .tasks import get_task

    raw = get_task(REFERENCE_TRANSFER_TASK, data_root=opts.data_root, download=False).raw_folder
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return REFERENCE_TRANSFER_TASK if all((raw / f).is_file() for f in files) else OFFLINE_TRANSFER_TASK


def _load_yaml(path: Path) -> dict:
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def _short(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def effective_config(run: Run, opts: Options) -> dict:
    """The LightningCLI config of ``run``: its YAML with the grid's changes applied.

    Changes: callbacks (and sampling) from ``run.callbacks_from``, evaluation callbacks at
    ``test`` only, ``run.callback_changes``, a TensorBoard logger writing to
    ``<runs>/<name>/version_0``, no progress bar, and the ``max_steps`` / ``tiny`` /
    ``data_root`` overrides.
    """
    cfg = _load_yaml(opts.configs / run.config)
    if run.callbacks_from:
        other = _load_yaml(opts.configs / run.callbacks_from)
        cfg.setdefault("trainer", {})["callbacks"] = copy.deepcopy(other.get("trainer", {}).get("callbacks", []))
        if "sampling" in other.get("model", {}):
            cfg.setdefault("model", {})["sampling"] = copy.deepcopy(other["model"]["sampling"])
    trainer, model, data = (cfg.setdefault(k, {}) for k in ("trainer", "model", "data"))
    task = transfer_task(opts) if run.group == "transfer" else None
    for cb in trainer.get("callbacks") or []:
        name = _short(cb["class_path"])
        args = cb.setdefault("init_args", {})
        if task is not None and args.get("task") == OFFLINE_TRANSFER_TASK:
            args["task"] = task
        if name in EVALUATION_CALLBACKS:
            args["on_fit_end"] = False
        args.update(run.callback_changes.get(name, {}))
        if opts.tiny:
            args.update(TINY_CALLBACKS.get(name, {}))
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": str(opts.runs), "name": run.name, "version": 0},
    }
    trainer["enable_progress_bar"] = False
    if opts.max_steps is not None:
        trainer["max_steps"] = opts.max_steps
    if opts.tiny:
        trainer.update(TINY_TRAINER)
        model.setdefault("net", {}).update(TINY_NET)
        model.setdefault("sampling", {}).update(TINY_SAMPLING)
        if data.get("task") == "gaussian":
            data.update(TINY_GAUSSIAN)
        else:
            data.update(TINY_ZOO, progress=False)
            if data.get("task") != "uci_breast_cancer":
                data.update(TINY_VISION_ZOO)
    if isinstance(trainer.get("val_check_interval"), int) and trainer.get("max_steps"):
        trainer["val_check_interval"] = min(trainer["val_check_interval"], trainer["max_steps"])
    if opts.data_root is not None and data.get("task") not in (None, "gaussian", "uci_breast_cancer"):
        data["data_root"] = opts.data_root
    return cfg


# ------------------------------------------------------------------------------ running
def run_folder(opts: Options, name: str) -> Path:
    return opts.runs / name / VERSION


def _checkpoint(folder: Path) -> Path | None:
    """``last.ckpt`` of a run, else its newest checkpoint, else ``None``."""
    ckpts = folder / "checkpoints"
    if (ckpts / "last.ckpt").is_file():
        return ckpts / "last.ckpt"
    found = sorted(ckpts.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def machine() -> str:
    """One line describing where a run was computed."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return f"{device}; {platform.system()} {platform.machine()}; torch {torch.__version__}"


def _write_config(run: Run, opts: Options) -> Path:
    path = opts.runs / run.name / "reproduce.yaml"
    atomic_write_text(path, yaml.safe_dump(effective_config(run, opts), sort_keys=False))
    return path


def _cli(args: list[str]):
    """Run the app's CLI on ``args`` with this command's own arguments out of ``sys.argv``
    (LightningCLI warns when it is given both)."""
    from . import cli

    saved = sys.argv
    sys.argv = saved[:1]
    try:
        return cli.main(args)
    finally:
        sys.argv = saved


def _fit(run: Run, opts: Options) -> Path:
    """Train ``run`` unless its training finished; returns its checkpoint."""
    folder = run_folder(opts, run.name)
    done = folder / "fit_done.json"
    ckpt = _checkpoint(folder)
    if done.is_file() and ckpt is not None:
        return ckpt
    cfg = _write_config(run, opts)
    log.info("[%s] fit (%s)", run.name, run.config)
    start = time.perf_counter()
    cli = _cli(["fit", "--config", str(cfg)])
    seconds = time.perf_counter() - start
    atomic_write_json(done, {"fit_seconds": seconds, "iterations": int(cli.trainer.global_step),
                             "batch_size": cli.datamodule.batch_size, "machine": machine()})
    ckpt = _checkpoint(folder)
    if ckpt is None:
        raise FileNotFoundError(f"fit of {run.name} wrote no checkpoint under {folder / 'checkpoints'}")
    log.info("[%s] trained %d iterations in %.0f s", run.name, cli.trainer.global_step, seconds)
    return ckpt


def _test(run: Run, opts: Options, ckpt: Path) -> None:
    cfg = _write_config(run, opts)
    log.info("[%s] test (%s)", run.name, ckpt)
    start = time.perf_counter()
    _cli(["test", "--config", str(cfg), "--ckpt_path", str(ckpt)])
    seconds = time.perf_counter() - start
    folder = run_folder(opts, run.name)
    if not (folder / "results.json").is_file():
        raise FileNotFoundError(f"test of {run.name} wrote no {folder / 'results.json'}")
    atomic_write_json(folder / "test_done.json", {"test_seconds": seconds, "checkpoint": str(ckpt),
                                                  "machine": machine()})
    log.info("[%s] evaluated in %.0f s", run.name, seconds)


def _zoo_target(run: Run, opts: Options) -> None:
    """Build (or find) a zoo and write its target networks' test metrics as results."""
    from .evaluation import write_results
    from .zoo import ZooConfig, build_zoo

    raw = _load_yaml(opts.configs / run.config)
    fields = {k: raw[k] for k in ZooConfig.__dataclass_fields__ if k in raw}
    fields["layer_sizes"] = tuple(fields["layer_sizes"])
    if run.group == "transfer" and fields.get("task") == OFFLINE_TRANSFER_TASK:
        fields["task"] = transfer_task(opts)
    if opts.tiny:
        fields.update(TINY_TARGET_ZOO)
    if opts.data_root is not None:
        fields["data_root"] = opts.data_root
    cfg = ZooConfig(**fields)
    log.info("[%s] zoo %s", run.name, run.config)
    start = time.perf_counter()
    zoo = build_zoo(cfg, cache_dir=raw.get("cache_dir", "logs/zoo_cache"), progress=False,
                    chunk_runs=min(int(raw.get("chunk_runs", 50)), cfg.n_runs))
    seconds = time.perf_counter() - start
    acc, loss = zoo.target_accuracy.double(), zoo.target_loss.double()
    folder = run_folder(opts, run.name)
    results = {"zoo": {"task": cfg.task, "layer_sizes": list(cfg.layer_sizes), "optimizer": cfg.optimizer,
                       "n_runs": cfg.n_runs, "epochs": cfg.epochs, "path": str(zoo.path)},
               "target": {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(correction=0)),
                          "loss_mean": float(loss.mean()), "loss_std": float(loss.std(correction=0)),
                          "n_networks": cfg.n_runs}}
    write_results(folder / "results.json", folder / "results.md", results, title=f"{cfg.task} zoo targets")
    atomic_write_json(folder / "test_done.json", {"test_seconds": seconds, "machine": machine()})


def plan(run: Run, opts: Options) -> str:
    """What :func:`run_grid` would do for ``run``: ``skip`` | ``test`` | ``fit+test`` | ``zoo``."""
    folder = run_folder(opts, run.name)
    if (folder / "results.json").is_file():
        return "skip"
    if run.kind == "zoo":
        return "zoo"
    source = run_folder(opts, run.ckpt_from or run.name)
    trained = (source / "fit_done.json").is_file() and _checkpoint(source) is not None
    if run.ckpt_from:
        return "test" if trained else f"fit {run.ckpt_from}, then test"
    return "test" if trained else "fit+test"


def run_grid(runs: Sequence[Run], opts: Options, dry_run: bool = False) -> dict[str, str]:
    """Run every run that has no results yet; returns ``{name: what was done}``.

    A run that raises is logged and reported as ``"failed: ..."``; the others still run.
    """
    by_name = {r.name: r for r in grid()}
    done: dict[str, str] = {}
    failed_fits: set[str] = set()  # not retried for every run that evaluates them
    for i, run in enumerate(runs, 1):
        action = plan(run, opts)
        log.info("run %d/%d %s: %s", i, len(runs), run.name, action)
        done[run.name] = action
        if dry_run or action == "skip":
            continue
        try:
            if run.kind == "zoo":
                _zoo_target(run, opts)
                continue
            source = by_name[run.ckpt_from] if run.ckpt_from else run
            if source.name in failed_fits:
                raise RuntimeError(f"training {source.name} failed earlier in this invocation")
            try:
                ckpt = _fit(source, opts)
            except Exception:
                failed_fits.add(source.name)
                raise
            _test(run, opts, ckpt)
        except Exception as err:  # one failed run must not stop a grid of hours
            log.exception("[%s] failed", run.name)
            done[run.name] = f"failed: {type(err).__name__}: {err}"
    return done


def select(groups: Sequence[str], only: Sequence[str] | None = None) -> list[Run]:
    """The runs of ``groups`` (``all`` = every group), optionally only the named ones."""
    wanted = set(GROUPS) if "all" in groups else set(groups)
    runs = [r for r in grid() if r.group in wanted]
    if only:
        names = {r.name for r in runs}
        unknown = sorted(set(only) - names)
        if unknown:
            raise ValueError(f"unknown run names {unknown}; the selected groups hold {sorted(names)}")
        runs = [r for r in runs if r.name in only]
    return runs


# ----------------------------------------------------------------------------------- CLI
def _repo_configs() -> Path:
    here = Path(__file__).resolve().parents[1] / "configs"
    return here if here.is_dir() else Path("configs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lightning_wflow.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("groups", nargs="+", choices=[*GROUPS, "all"], help="which tables to reproduce")
    p.add_argument("--out", default="docs/results", help="folder of the tables and figures")
    p.add_argument("--runs", default=None, help="folder of the run folders (default logs/reproduce, "
                                                "logs/reproduce_tiny with --tiny)")
    p.add_argument("--configs", default=None, help="folder of the experiment configs (default: the repository's)")
    p.add_argument("--max-steps", type=int, default=None, help="override every run's trainer.max_steps")
    p.add_argument("--tiny", action="store_true", help="shrink every run to a few steps (tests)")
    p.add_argument("--dry-run", action="store_true", help="say what would run; run and write nothing")
    p.add_argument("--report-only", action="store_true", help="write tables and figures from existing results")
    p.add_argument("--data-root", default=None, help="override data.data_root of the MNIST tasks")
    p.add_argument("--only", nargs="+", default=None, help="run only these run names")
    p.add_argument("--transfer-task", default="auto", choices=TRANSFER_TASKS,
                   help="task of the transfer runs (auto: fashion_mnist when its files are under the data root, "
                        "else mnist_permuted)")
    return p


def main(args: list[str] | None = None) -> list[Path]:
    """Run the grid and write the report; returns the files written.

    Raises:
        RuntimeError: after the report is written, when a run failed.
    """
    from .reproduce_report import write_report

    ns = build_parser().parse_args(args)
    if ns.max_steps is not None and ns.max_steps < 1:
        raise SystemExit(f"--max-steps must be >= 1, got {ns.max_steps}")
    runs_dir = ns.runs or ("logs/reproduce_tiny" if ns.tiny else "logs/reproduce")
    opts = Options(configs=Path(ns.configs) if ns.configs else _repo_configs(), runs=Path(runs_dir),
                   max_steps=ns.max_steps, tiny=ns.tiny, data_root=ns.data_root, transfer_task=ns.transfer_task)
    runs = select(ns.groups, ns.only)
    done = {} if ns.report_only else run_grid(runs, opts, dry_run=ns.dry_run)
    if ns.dry_run:
        return []
    groups = sorted({r.group for r in runs}, key=GROUPS.index)
    written = write_report(groups, grid(), opts.runs, Path(ns.out))
    failed = {name: what for name, what in done.items() if what.startswith("failed")}
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed (the report leaves their cells empty): {failed}")
    return written


if __name__ == "__main__":
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s reproduce: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    written = main()
    sys.stdout.write("".join(f"wrote {p}\n" for p in written))
