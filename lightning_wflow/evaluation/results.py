"""Results files: a JSON document and a markdown report, each written atomically.

Both texts are built completely before anything is written, and each file goes through
:func:`lightning_wflow.utils.atomic_write_text` (temporary file + rename), so an error or an
interruption never leaves a half-written file: a file is either the previous one, absent,
or complete. The JSON is written last, so its presence means the markdown is complete too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..utils import atomic_write_text

__all__ = ["to_jsonable", "format_markdown", "write_results"]

_STAT_KEYS = frozenset({"mean", "std", "n"})


def _summarize(values: np.ndarray) -> Any:
    values = values.astype(np.float64).reshape(-1)
    if values.size == 1:
        return float(values[0])
    if values.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}


def to_jsonable(obj: Any, where: str = "results") -> Any:
    """Convert evaluation results to JSON-able Python values.

    Mappings become dicts with string keys, lists and tuples lists, dataclasses dicts of
    their fields. A tensor or array with one element becomes a number; with more elements
    it is read as one value per network and summarised as ``{"mean", "std", "n"}``
    (population std): pass a Python list to keep a sequence (a curve) as it is.

    Args:
        obj: the results.
        where: the path of ``obj`` inside the results, used in error messages.

    Raises:
        TypeError: for a value of another type, naming its path.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, Tensor):
        if obj.numel() == 1 and not obj.is_floating_point() and not obj.is_complex():
            return int(obj.item())
        return _summarize(obj.detach().to("cpu", torch.float64).numpy())
    if isinstance(obj, np.ndarray):
        return _summarize(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(obj)
        }
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"cannot serialise {where} of type {type(obj).__name__}; expected numbers, strings, "
        "tensors, arrays, dataclasses, mappings or lists"
    )


def _finite_or_none(obj: Any) -> Any:
    """Replace NaN and infinities by ``None`` so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------- markdown
def _is_stat(v: Any) -> bool:
    return isinstance(v, dict) and "mean" in v and "std" in v and set(v) <= _STAT_KEYS


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if _is_stat(v):
        if v["mean"] is None:
            return "—"
        return f"{v['mean']:.4g} ± {v['std']:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def _cells(row: dict, prefix: str = "") -> dict[str, str]:
    """Flatten one row: nested dicts get dotted names, ``X_mean``/``X_std`` merge into ``X``."""
    out: dict[str, str] = {}
    for key, v in row.items():
        if key.endswith("_std") and f"{key[:-4]}_mean" in row:
            continue
        name = f"{prefix}{key}"
        std_key = f"{key[:-5]}_std" if key.endswith("_mean") else None
        if std_key is not None and std_key in row:
            out[f"{prefix}{key[:-5]}"] = _fmt({"mean": v, "std": row[std_key]})
        elif isinstance(v, dict) and not _is_stat(v):
            out.update(_cells(v, f"{name}."))
        else:
            out[name] = _fmt(v)
    return out


def _table(section: dict) -> list[str]:
    rows: list[tuple[str, dict[str, str]]] = []
    for name, v in section.items():
        if isinstance(v, dict) and not _is_stat(v):
            rows.append((name, _cells(v)))
        elif isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            rows += [(name, _cells(r)) for r in v]
        else:
            rows.append((name, {"value": _fmt(v)}))
    columns: list[str] = []
    for _, cells in rows:
        columns += [c for c in cells if c not in columns]
    lines = ["| name | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, cells in rows:
        lines.append(
            f"| {_fmt(name)} | " + " | ".join(cells.get(c, "") for c in columns) + " |"
        )
    return lines


def format_markdown(results: Mapping[str, Any], title: str = "Results") -> str:
    """Markdown report: one table per top-level section, numbers as ``mean ± std``.

    Top-level values that are not mappings are gathered in a first ``summary`` table.
    Within a section, a mapping entry is one row (its keys are columns), a list of
    mappings is one row per element (a curve), and anything else is a ``value`` cell.

    Args:
        results: output of :func:`to_jsonable`, or anything it accepts.
        title: heading of the document.
    """
    data = to_jsonable(results)
    if not isinstance(data, dict):
        raise TypeError(f"results must be a mapping of sections, got {type(results).__name__}")
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) or _is_stat(v)}
    sections = {k: v for k, v in data.items() if k not in scalars}
    lines = [f"# {title}", ""]
    if scalars:
        lines += ["## summary", "", *_table(scalars), ""]
    for name, section in sections.items():
        lines += [f"## {name}", ""]
        lines += _table(section) if section else ["(empty)"]
        lines.append("")
    return "\n".join(lines)


def write_results(
    path_json: str | os.PathLike,
    path_md: str | os.PathLike,
    results: Mapping[str, Any],
    title: str = "Results",
) -> None:
    """Write ``results`` as JSON and as a markdown report, atomically.

    Args:
        path_json: destination of the JSON document (NaN and infinities become ``null``).
        path_md: destination of the markdown report (see :func:`format_markdown`).
        results: ``{section: {row: {metric: value}}}``; values as accepted by :func:`to_jsonable`.
        title: heading of the markdown report.

    Raises:
        TypeError: when a value cannot be serialised; nothing is written then.
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a mapping of sections, got {type(results).__name__}")
    data = to_jsonable(results)
    json_text = json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n"
    md_text = format_markdown(data, title=title)
    atomic_write_text(path_md, md_text)
    atomic_write_text(path_json, json_text)
