"""Entry point: ``python -m lightning_wflow {fit,validate,test,predict} --config ...``."""

from __future__ import annotations

import re
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from .lit import FlowMatchingModule, SampleWriter, WeightZooDataModule

__all__ = ["WFlowCLI", "main", "latest_resumable_version"]


def latest_resumable_version(save_dir: str | Path, name: str) -> int | None:
    """Newest ``<save_dir>/<name>/version_N`` that holds ``checkpoints/last.ckpt``."""
    root = Path(save_dir) / name
    versions = [
        int(m.group(1))
        for d in root.glob("version_*")
        if (m := re.fullmatch(r"version_(\d+)", d.name)) and (d / "checkpoints" / "last.ckpt").is_file()
    ]
    return max(versions) if versions else None


class WFlowCLI(LightningCLI):
    """LightningCLI with the data's architecture and task linked into the model.

    Also: every run saves ``checkpoints/last.ckpt``; ``fit --ckpt_path last`` continues the
    newest run that has one, in the same log folder (TensorBoard curves continue).
    """

    def add_arguments_to_parser(self, parser) -> None:
        # the architecture and task are set once, under data:, and flow into the model
        for key in ("layer_sizes", "activation", "task", "data_root"):
            parser.link_arguments(f"data.{key}", f"model.{key}")
        parser.add_lightning_class_args(SampleWriter, "samples")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        if cfg is None or cfg.get("ckpt_path") != "last":
            return
        logger = cfg["trainer"].get("logger")
        init = getattr(logger, "init_args", None) if logger is not None else None
        if init is None or init.get("version") is not None or "save_dir" not in init:
            return
        version = latest_resumable_version(init["save_dir"], init.get("name") or "lightning_logs")
        if version is None:
            raise FileNotFoundError(
                f"--ckpt_path last: no {init['save_dir']}/{init.get('name')}/version_*/checkpoints/last.ckpt "
                "to resume from"
            )
        init["version"] = version


def main(args: list[str] | None = None) -> WFlowCLI:
    """Run the CLI; ``args`` replaces ``sys.argv[1:]`` (tests drive it in-process)."""
    return WFlowCLI(
        FlowMatchingModule,
        WeightZooDataModule,
        seed_everything_default=0,
        trainer_defaults={
            # evaluation callbacks need autograd (guidance, likelihoods) during test
            "inference_mode": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "logs", "name": "wflow"},
            },
        },
        save_config_kwargs={"overwrite": True},
        args=args,
    )
