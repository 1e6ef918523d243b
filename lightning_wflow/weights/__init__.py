"""What a network's parameters are: architecture, flat <-> layers, batched forward, graph view, files."""

from .graph import MLPGraph
from .io import SAMPLE_FORMAT, SampleFile, load_samples, load_sequentials, save_samples
from .mlp import ACTIVATIONS, POSITIVELY_HOMOGENEOUS, LayerSlices, MLPSpec

__all__ = [
    "ACTIVATIONS",
    "POSITIVELY_HOMOGENEOUS",
    "SAMPLE_FORMAT",
    "LayerSlices",
    "MLPGraph",
    "MLPSpec",
    "SampleFile",
    "load_samples",
    "load_sequentials",
    "save_samples",
]
