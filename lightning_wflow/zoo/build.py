"""Building, resuming and loading zoos in a cache folder.

Layout of ``<cache_dir>/<ZooConfig.dirname()>/``:

- ``runs_<a>-<b>.safetensors``: runs ``a <= r < b`` trained together (a chunk), with
  ``weights (r, T, P)``, ``final (r, P)``, ``target_accuracy (r,)``, ``target_loss (r,)``,
  ``steps (T,)``.
- ``manifest.json``: the header (format, key, config, architecture, task metadata, schedule)
  and, for each completed chunk, its run range, file name, size and sha256; ``complete`` once
  every chunk is there.

A chunk is written first and listed in the manifest afterwards, both atomically, so an
interrupted build leaves only whole chunks listed and continues after the last one. A chunk
whose file is missing, truncated or corrupt, and a manifest whose header differs from the
config, are reported with :class:`ZooCacheWarning` and rebuilt.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..tasks import get_task
from ..weights import MLPSpec
from .config import ZOO_FORMAT, ZooConfig
from .store import (
    ZooCacheError,
    ZooCacheWarning,
    read_manifest,
    read_tensors,
    write_manifest,
    write_tensors,
)
from .trainer import train_trajectories

__all__ = ["BuildInfo", "Zoo", "build_zoo", "load_zoo", "zoo_path"]

log = logging.getLogger(__name__)

_CHUNK_KEYS = ("weights", "final", "target_accuracy", "target_loss", "steps")


@dataclass(frozen=True)
class BuildInfo:
    """What one :func:`build_zoo` call did.

    Attributes:
        trained: run ranges ``(a, b)`` trained by this call.
        reused: run ranges found complete and valid in the cache.
        seconds: wall time of the call.
    """

    trained: tuple[tuple[int, int], ...] = ()
    reused: tuple[tuple[int, int], ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class Zoo:
    """A zoo of recorded trajectories (CPU tensors).

    Attributes:
        spec: architecture of every network.
        weights: ``(R, T, P)`` recorded checkpoints of ``R`` runs.
        final: ``(R, P)`` weights after each run's last step.
        target_accuracy: ``(R,)`` test accuracy of ``final`` (``None`` for tasks without data).
        target_loss: ``(R,)`` test loss of ``final`` (``None`` for tasks without data).
        steps: ``(T,)`` optimiser step of each checkpoint.
        manifest: the JSON manifest (header, chunks, summary).
        path: the cache folder (``None`` for zoos that are not stored).
        build: what the call that produced this object did.
    """

    spec: MLPSpec
    weights: Tensor
    final: Tensor
    target_accuracy: Tensor | None
    target_loss: Tensor | None
    steps: Tensor
    manifest: dict
    path: Path | None = None
    build: BuildInfo = field(default_factory=BuildInfo)

    @property
    def n_runs(self) -> int:
        return self.weights.shape[0]

    @property
    def n_checkpoints(self) -> int:
        """Checkpoints per run ``T``."""
        return self.weights.shape[1]


def zoo_path(cfg: ZooConfig, cache_dir: str | Path) -> Path:
    """The cache folder of ``cfg``."""
    return Path(cache_dir) / cfg.dirname()


def _header(cfg: ZooConfig, task_meta: dict, sched) -> dict:
    """The manifest fields that must match for a cache entry to be used."""
    header = {
        "format": ZOO_FORMAT,
        "key": cfg.key(),
        "config": cfg.key_dict(),
        "spec": cfg.spec.to_dict(),
        "task": task_meta,
        "schedule": {
            "iters_per_epoch": sched.iters_per_epoch,
            "n_iterations": sched.n_iterations,
            "burn_in_iterations": sched.burn_in_iterations,
            "n_recorded": len(sched.recorded_steps),
        },
    }
    return json.loads(json.dumps(header))  # as it reads back from disk


def _check_chunk(tensors: dict[str, Tensor], n: int, n_steps: int, n_params: int) -> None:
    shapes = {
        "weights": (n, n_steps, n_params),
        "final": (n, n_params),
        "target_accuracy": (n,),
        "target_loss": (n,),
        "steps": (n_steps,),
    }
    for k, shape in shapes.items():
        if k not in tensors or tuple(tensors[k].shape) != shape:
            got = tuple(tensors[k].shape) if k in tensors else "missing"
            raise ZooCacheError(f"tensor {k!r} has shape {got}, expected {shape}")


def _summary(acc: Tensor, loss: Tensor) -> dict:
    return {
        "accuracy_mean": acc.mean().item(),
        "accuracy_std": acc.std().item() if acc.numel() > 1 else 0.0,
        "loss_mean": loss.mean().item(),
        "loss_std": loss.std().item() if loss.numel() > 1 else 0.0,
    }


def build_zoo(
    cfg: ZooConfig,
    cache_dir: str | Path = "logs/zoo_cache",
    progress: bool = True,
    chunk_runs: int = 50,
    device: str | torch.device | None = None,
    download: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Zoo:
    """Find the zoo of ``cfg`` in ``cache_dir`` or build the missing part of it.

    Args:
        cfg: zoo configuration (validated here before any work).
        cache_dir: root of the zoo cache.
        progress: tqdm bar per chunk.
        chunk_runs: runs trained together and stored per file (the unit of resumption).
        device: training device (default CPU).
        download: let torchvision tasks download missing data.
        on_chunk: called with ``(a, b)`` after chunk ``a <= r < b`` is stored (a hook for
            progress reporting; an exception raised there interrupts the build after that chunk).

    Returns:
        The complete :class:`Zoo`.
    """
    t0 = time.perf_counter()
    cfg.validate()
    if isinstance(chunk_runs, bool) or not isinstance(chunk_runs, int) or chunk_runs < 1:
        raise ValueError(f"chunk_runs must be an integer >= 1, got {chunk_runs!r}")
    task = get_task(cfg.task, data_root=cfg.data_root, seed=cfg.split_seed, download=download)
    data = task.data()
    sched = cfg.schedule(data.x_train.shape[0])
    spec, n_steps = cfg.spec, len(sched.recorded_steps)
    folder = zoo_path(cfg, cache_dir)
    header = _header(cfg, task.metadata(), sched)

    listed, was_complete = _listed_chunks(folder, header)
    plan = [(a, min(a + chunk_runs, cfg.n_runs)) for a in range(0, cfg.n_runs, chunk_runs)]
    chunks: dict[tuple[int, int], dict[str, Tensor]] = {}
    done: list[dict] = []
    trained, reused = [], []
    for a, b in plan:
        entry = listed.get((a, b))
        if entry is not None:
            try:
                tensors = read_tensors(folder / entry["file"], entry)
                _check_chunk(tensors, b - a, n_steps, spec.n_params)
                chunks[(a, b)] = tensors
                done.append(entry)
                reused.append((a, b))
                continue
            except ZooCacheError as err:
                warnings.warn(
                    f"zoo cache {folder}: chunk of runs {a}-{b} is unusable ({err}); retraining it",
                    ZooCacheWarning,
                    stacklevel=2,
                )
        tc = time.perf_counter()
        traj = train_trajectories(
            cfg, task, range(a, b), data=data, device=device, progress=progress,
            desc=f"{cfg.task} runs {a}-{b - 1} of {cfg.n_runs}",
        )
        ev = task.evaluate(spec, traj.final.to(device or "cpu"), split="test")
        tensors = {
            "weights": traj.weights,
            "final": traj.final,
            "target_accuracy": ev.accuracy.cpu(),
            "target_loss": ev.loss.cpu(),
            "steps": traj.steps,
        }
        name = f"runs_{a:05d}-{b:05d}.safetensors"
        entry = {"runs": [a, b], "file": name, **write_tensors(folder / name, tensors)}
        entry["seconds"] = round(time.perf_counter() - tc, 3)
        chunks[(a, b)] = tensors
        done.append(entry)
        trained.append((a, b))
        write_manifest(
            folder, {**header, "chunk_runs": chunk_runs, "complete": False, "chunks": done}
        )
        log.info("zoo %s: stored runs %d-%d in %.1f s", folder.name, a, b - 1, entry["seconds"])
        if on_chunk is not None:
            on_chunk(a, b)

    zoo_tensors = {k: torch.cat([chunks[c][k] for c in plan]) for k in _CHUNK_KEYS[:4]}
    summary = _summary(zoo_tensors["target_accuracy"], zoo_tensors["target_loss"])
    manifest = {
        **header, "chunk_runs": chunk_runs, "complete": True, "chunks": done, "target": summary
    }
    if trained or not was_complete or listed.keys() != set(plan):
        write_manifest(folder, manifest)
        _remove_unlisted(folder, {e["file"] for e in done})
    info = BuildInfo(tuple(trained), tuple(reused), time.perf_counter() - t0)
    return Zoo(
        spec=spec,
        weights=zoo_tensors["weights"],
        final=zoo_tensors["final"],
        target_accuracy=zoo_tensors["target_accuracy"],
        target_loss=zoo_tensors["target_loss"],
        steps=chunks[plan[0]]["steps"],
        manifest=manifest,
        path=folder,
        build=info,
    )


def _listed_chunks(folder: Path, header: dict) -> tuple[dict[tuple[int, int], dict], bool]:
    """Chunk entries of a manifest matching ``header`` and its ``complete`` flag.

    Warns and returns ``({}, False)`` when the manifest is unreadable or does not match.
    """
    try:
        manifest = read_manifest(folder)
    except ZooCacheError as err:
        warnings.warn(f"zoo cache {folder}: {err}; rebuilding", ZooCacheWarning, stacklevel=3)
        return {}, False
    if manifest is None:
        return {}, False
    differing = sorted(k for k in header if manifest.get(k) != header[k])
    if differing:
        warnings.warn(
            f"zoo cache {folder}: manifest does not match the configuration (differs in "
            f"{', '.join(differing)}); rebuilding",
            ZooCacheWarning,
            stacklevel=3,
        )
        return {}, False
    entries = {}
    for e in manifest.get("chunks", []):
        if isinstance(e, dict) and isinstance(e.get("runs"), list) and len(e["runs"]) == 2:
            entries[(int(e["runs"][0]), int(e["runs"][1]))] = e
    return entries, bool(manifest.get("complete"))


def _remove_unlisted(folder: Path, keep: set[str]) -> None:
    """Delete chunk files the manifest no longer lists (from another chunking or a bad build)."""
    for path in folder.glob("runs_*.safetensors"):
        if path.name not in keep:
            path.unlink()


def load_zoo(path: str | Path) -> Zoo:
    """Load a complete zoo folder written by :func:`build_zoo`, verifying every chunk.

    Unlike :func:`build_zoo` this needs neither the task's data nor this package's config
    (only the folder), and raises instead of rebuilding.

    Raises:
        ZooCacheError: no manifest, incomplete zoo, or a chunk failing verification.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ZooCacheError(f"{folder} has no manifest.json")
    if not manifest.get("complete"):
        raise ZooCacheError(f"{folder} holds an incomplete zoo; run build_zoo to finish it")
    spec = MLPSpec.from_dict(manifest["spec"])
    n_steps = manifest["schedule"]["n_recorded"]
    parts = []
    for e in sorted(manifest["chunks"], key=lambda e: e["runs"][0]):
        a, b = e["runs"]
        tensors = read_tensors(folder / e["file"], e)
        _check_chunk(tensors, b - a, n_steps, spec.n_params)
        parts.append(tensors)
    cat = {k: torch.cat([p[k] for p in parts]) for k in _CHUNK_KEYS[:4]}
    return Zoo(
        spec=spec,
        weights=cat["weights"],
        final=cat["final"],
        target_accuracy=cat["target_accuracy"],
        target_loss=cat["target_loss"],
        steps=parts[0]["steps"],
        manifest=manifest,
        path=folder,
    )
