"""Build a zoo and report it: ``python -m lightning_wflow.zoo --config configs/zoo/uci.yaml``.

The config file holds the fields of :class:`ZooConfig` at its top level, plus the build options
``cache_dir``, ``chunk_runs``, ``device``, ``download``, ``progress`` and ``num_threads``; any of them can be
overridden on the command line (``--n_runs 10``).
"""

from __future__ import annotations

import logging
import sys

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from .build import build_zoo
from .config import ZooConfig

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_wflow.zoo",
        description="Build (or find in the cache) a zoo of training trajectories.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with the fields below")
    parser.add_class_arguments(ZooConfig, nested_key=None, as_group=True)
    parser.add_argument("--cache_dir", type=str, default="logs/zoo_cache", help="zoo cache root")
    parser.add_argument("--chunk_runs", type=int, default=50, help="runs per stored chunk")
    parser.add_argument("--device", type=str | None, default=None, help="training device")
    parser.add_argument("--download", type=bool, default=True, help="download missing data")
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    parser.add_argument(
        "--num_threads", type=int | None, default=None,
        help="torch.set_num_threads; 1 is fastest for small MLPs on a busy CPU",
    )
    return parser


def main(args: list[str] | None = None) -> int:
    """Parse ``args``, build the zoo, print where it is and its target accuracy."""
    parser = build_parser()
    ns = parser.parse_args(args)
    fields = ZooConfig.__dataclass_fields__
    cfg = ZooConfig(**{k: v for k, v in vars(ns).items() if k in fields})
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if ns.num_threads is not None:
        torch.set_num_threads(ns.num_threads)
    zoo = build_zoo(
        cfg,
        cache_dir=ns.cache_dir,
        progress=ns.progress,
        chunk_runs=ns.chunk_runs,
        device=ns.device,
        download=ns.download,
    )
    target = zoo.manifest["target"]
    out = sys.stdout
    out.write(f"zoo: {zoo.path}\n")
    out.write(
        f"runs: {zoo.n_runs}, checkpoints per run: {zoo.n_checkpoints}, parameters: "
        f"{zoo.spec.n_params}, trained now: {sum(b - a for a, b in zoo.build.trained)} runs "
        f"in {zoo.build.seconds:.1f} s\n"
    )
    out.write(
        f"target test accuracy: {target['accuracy_mean']:.4f} +- {target['accuracy_std']:.4f}, "
        f"test loss: {target['loss_mean']:.4f} +- {target['loss_std']:.4f}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
