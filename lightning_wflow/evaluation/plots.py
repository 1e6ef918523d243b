"""Figures of the evaluations (matplotlib, Agg canvas, no pyplot state and no file writes).

Each function returns a :class:`matplotlib.figure.Figure` that a caller can log to TensorBoard
(``SummaryWriter.add_figure``) or save with ``fig.savefig``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .init_training import InitCurve
from .posterior import BMAPoint

__all__ = ["plot_steps_sweep", "plot_bma", "plot_init_curves", "plot_histograms"]

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _new_figure(n_axes: int, width: float = 4.5, height: float = 3.5) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * n_axes, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_axes, squeeze=False)[0]
    return fig, list(axes)


def _as_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _check_labels(by_label: Mapping, name: str) -> None:
    if not by_label:
        raise ValueError(f"{name} must map at least one label to values, got an empty mapping")


def _plot_band(ax, x: np.ndarray, values: ArrayLike, label: str, name: str) -> None:
    """Plot ``(S,)`` values as a line, or ``(S, B)`` values as mean with a +-std band."""
    v = _as_numpy(values)
    if v.ndim not in (1, 2) or v.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}[{label!r}] must have shape ({x.shape[0]},) or ({x.shape[0]}, B) to match "
            f"steps, got {v.shape}"
        )
    if v.ndim == 1:
        ax.plot(x, v, marker="o", label=label)
        return
    mean, std = v.mean(1), v.std(1)
    (line,) = ax.plot(x, mean, marker="o", label=label)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def plot_steps_sweep(
    steps: ArrayLike,
    acc_by_label: Mapping[str, ArrayLike],
    loss_by_label: Mapping[str, ArrayLike],
) -> Figure:
    """Sample accuracy and loss against the number of integration steps (log2 axis).

    Args:
        steps: ``(S,)`` numbers of integration steps.
        acc_by_label: label (e.g. ``"guided"``) -> ``(S,)`` mean accuracy, or ``(S, B)``
            per-sample accuracy drawn as mean +- std.
        loss_by_label: the same for the loss.
    """
    _check_labels(acc_by_label, "acc_by_label")
    _check_labels(loss_by_label, "loss_by_label")
    x = _as_numpy(steps)
    if x.ndim != 1:
        raise ValueError(f"steps must be one-dimensional, got shape {x.shape}")
    fig, (ax_acc, ax_loss) = _new_figure(2)
    for label, values in acc_by_label.items():
        _plot_band(ax_acc, x, values, label, "acc_by_label")
    for label, values in loss_by_label.items():
        _plot_band(ax_loss, x, values, label, "loss_by_label")
    for ax, ylabel in ((ax_acc, "test accuracy"), (ax_loss, "test loss")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("integration steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_bma(points_by_label: Mapping[str, Sequence[BMAPoint]]) -> Figure:
    """BMA accuracy, NLL and ECE against the number of averaged networks (log2 axis).

    Args:
        points_by_label: label (e.g. ``"flow"``, ``"target"``) -> output of :func:`bma_curve`.
    """
    _check_labels(points_by_label, "points_by_label")
    fig, axes = _new_figure(3)
    for label, points in points_by_label.items():
        if not points:
            raise ValueError(f"points_by_label[{label!r}] is empty; expected BMAPoint entries")
        ks = [p.k for p in points]
        for ax, field in zip(axes, ("accuracy", "nll", "ece")):
            ax.plot(ks, [getattr(p, field) for p in points], marker="o", label=label)
    for ax, ylabel in zip(axes, ("accuracy", "NLL", "ECE")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("networks averaged (k)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_init_curves(curves_by_label: Mapping[str, InitCurve]) -> Figure:
    """Test accuracy and loss (mean +- std over networks) against training steps.

    Args:
        curves_by_label: label (e.g. ``"flow samples"``, ``"prior"``) -> :class:`InitCurve`.
    """
    _check_labels(curves_by_label, "curves_by_label")
    fig, (ax_acc, ax_loss) = _new_figure(2)
    for label, curve in curves_by_label.items():
        x = _as_numpy(curve.steps)
        _plot_band(ax_acc, x, curve.accuracy, label, "curves_by_label")
        _plot_band(ax_loss, x, curve.loss, label, "curves_by_label")
    for ax, ylabel in ((ax_acc, "test accuracy"), (ax_loss, "test loss")):
        ax.set_xlabel("training steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_histograms(
    values_by_label: Mapping[str, ArrayLike], xlabel: str, bins: int = 30
) -> Figure:
    """Overlaid histograms on shared bins (e.g. accuracy of samples vs. target networks).

    Args:
        values_by_label: label -> ``(B,)`` values (non-finite entries are dropped).
        xlabel: the quantity's name.
        bins: number of shared bins.
    """
    _check_labels(values_by_label, "values_by_label")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    arrays = {}
    for label, values in values_by_label.items():
        v = _as_numpy(values).reshape(-1)
        arrays[label] = v[np.isfinite(v)]
    pooled = np.concatenate(list(arrays.values()))
    lo, hi = (pooled.min(), pooled.max()) if pooled.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig, (ax,) = _new_figure(1, width=5.5)
    for label, v in arrays.items():
        ax.hist(v, bins=edges, alpha=0.5, label=f"{label} (n={v.size})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
