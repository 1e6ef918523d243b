"""Lightning glue: data module, flow-matching module, callbacks."""

from .callbacks import SampleWriter, WeightMeanHistogram
from .config import SamplingConfig, VelocityNetConfig
from .datamodule import WeightZooDataModule
from .module import FlowMatchingModule

__all__ = [
    "FlowMatchingModule",
    "SampleWriter",
    "SamplingConfig",
    "VelocityNetConfig",
    "WeightMeanHistogram",
    "WeightZooDataModule",
]
