"""Entry point: ``python -m lightning_wflow {fit,validate,test,predict} --config ...``."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from .lit import FlowMatchingModule, SampleWriter, WeightZooDataModule

__all__ = ["WFlowCLI", "main"]


class WFlowCLI(LightningCLI):
    """LightningCLI with the data's architecture and task linked into the model."""

    def add_arguments_to_parser(self, parser) -> None:
        # the architecture and task are set once, under data:, and flow into the model
        for key in ("layer_sizes", "activation", "task", "data_root"):
            parser.link_arguments(f"data.{key}", f"model.{key}")
        parser.add_lightning_class_args(SampleWriter, "samples")


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
