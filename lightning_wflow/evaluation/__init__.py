"""Evaluation of sampled networks, in plain torch and batched over networks: sample quality,
functional diversity, posterior predictive (Bayesian model averaging) and calibration,
learned initialisation, figures and results files."""

from .diversity import jensen_shannon, mean_pairwise_jsd, pairwise_jsd
from .init_training import OPTIMIZERS, InitCurve, minibatch_indices, train_from_init
from .plots import plot_bma, plot_histograms, plot_init_curves, plot_steps_sweep
from .posterior import ECE_NORMS, BMAPoint, bma_curve, default_ks, expected_calibration_error
from .quality import SampleQuality, predictive_probs, sample_quality
from .results import format_markdown, to_jsonable, write_results

__all__ = [
    "ECE_NORMS",
    "OPTIMIZERS",
    "BMAPoint",
    "InitCurve",
    "SampleQuality",
    "bma_curve",
    "default_ks",
    "expected_calibration_error",
    "format_markdown",
    "jensen_shannon",
    "mean_pairwise_jsd",
    "minibatch_indices",
    "pairwise_jsd",
    "plot_bma",
    "plot_histograms",
    "plot_init_curves",
    "plot_steps_sweep",
    "predictive_probs",
    "sample_quality",
    "to_jsonable",
    "train_from_init",
    "write_results",
]
