"""Lightning glue: data module, flow-matching module, callbacks."""

from .callbacks import SampleWriter, WeightMeanHistogram
from .evaluation import (
    LearnedInitialisation,
    Likelihood,
    LossBarrier,
    PosteriorPredictive,
    SampleQuality,
    StepsSweep,
)
from .config import SamplingConfig, VelocityNetConfig
from .datamodule import WeightZooDataModule
from .module import FlowMatchingModule

__all__ = [
    "FlowMatchingModule",
    "LearnedInitialisation",
    "Likelihood",
    "LossBarrier",
    "PosteriorPredictive",
    "SampleQuality",
    "StepsSweep",
    "SampleWriter",
    "SamplingConfig",
    "VelocityNetConfig",
    "WeightMeanHistogram",
    "WeightZooDataModule",
]
