"""Tables (markdown + CSV) and figures (PNG) of the reproduction, from the runs' results.

Everything is read from the run folders that :mod:`lightning_wflow.reproduce` fills:
``results.json`` (the evaluation callbacks' numbers), ``fit_done.json`` / ``test_done.json``
(compute used) and the TensorBoard events (histograms of barriers and sample means, which
the results JSON only summarises). Every file is written atomically; a missing run leaves
its cells empty (``—``) rather than failing.

The report also writes one archive record per run, ``<out>/runs/<name>.json`` (results,
compute and the event data the report uses). A run whose folder is gone (a fresh clone, a
cleaned ``logs/``) is read back from its record, so re-running one experiment of a group
rewrites the group's tables without dropping the others' committed numbers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .evaluation import BMAPoint, plot_bma, plot_histograms, plot_steps_sweep
from .reproduce import MNIST_EXTRA, MNIST_NETS, TRANSFER_EXTRA, UCI_MLP, WIDE_EXTRA
from .utils import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["REFERENCE", "Table", "bucket_values", "collect", "write_report"]

log = logging.getLogger("lightning_wflow.reproduce")

GEOMETRIES = ("euclidean", "normalized", "geometric")
TITLE = {"euclidean": "Euclidean", "normalized": "Normalized", "geometric": "Geometric"}
VERSION = "version_0"

#: The reference's numbers (``../shared/reference/RESULTS_TO_BEAT.md``): (mean, std) pairs, None = not given.
REFERENCE: dict[str, Any] = {
    "uci": {  # (accuracy, loss) per flow and variant
        ("euclidean", "plain"): ((0.998, 0.006), (0.101, 0.050)),
        ("euclidean", "aligned"): ((0.998, 0.006), (0.070, 0.040)),
        ("euclidean", "aligned_ot"): ((0.993, 0.010), (0.053, 0.028)),
        ("normalized", "plain"): ((0.993, 0.009), (0.027, 0.014)),
        ("normalized", "aligned"): ((0.989, 0.011), (0.030, 0.015)),
        ("normalized", "aligned_ot"): ((0.988, 0.018), (0.044, 0.047)),
        ("geometric", "plain"): ((0.992, 0.011), (0.019, 0.009)),
        ("geometric", "aligned"): ((0.993, 0.001), (0.018, 0.001)),
        ("geometric", "aligned_ot"): ((0.991, 0.011), (0.020, 0.012)),
        ("target", "plain"): ((0.992, 0.010), (0.048, 0.032)),
    },
    "uci_barrier": {"before": (0.244, 0.009), "after": (0.070, 0.001)},
    "mnist": {  # (accuracy, loss mean, diversity)
        ("euclidean", "independent"): ((0.737, 0.085), 0.814, 0.00102),
        ("euclidean", "ot"): ((0.757, 0.077), 0.753, 0.00085),
        ("normalized", "independent"): ((0.753, 0.074), 1.537, 0.00086),
        ("normalized", "ot"): ((0.706, None), 1.608, 0.00117),
        ("geometric", "independent"): ((0.737, 0.070), 1.457, 0.00073),
        ("geometric", "ot"): ((0.786, 0.064), 1.443, 0.00093),
        ("target", "independent"): ((0.933, 0.009), 0.231, 0.00002),
    },
    "transfer_guided": {"euclidean": 0.754, "normalized": 0.724, "geometric": 0.730, "unguided": 0.080,
                        "target": 0.908},
    "transfer_wide": {"euclidean": (0.826, 0.842), "normalized": (0.203, None), "geometric": (0.890, 0.886)},
}


# ------------------------------------------------------------------------------ reading
#: TensorBoard tags the tables and figures read (histograms: barriers and sample weight means).
EVENT_HISTOGRAMS = ("barrier/zoo", "barrier/samples", "samples/weight_mean_eps0", "samples/weight_mean_eps0.05")
EVENT_SCALARS = tuple(f"samples/weight_mean_eps{e}/{s}" for e in ("0", "0.05") for s in ("mean", "std"))


def collect(names: Sequence[str], runs_dir: Path, archive: Path | None = None) -> dict[str, dict]:
    """``{name: {"results", "compute", "events", "archived"}}`` for every run that has results.

    A run folder's ``results.json`` wins; without it, ``<archive>/<name>.json`` (written by an
    earlier report) is used and the entry is marked ``archived``.
    """
    out = {}
    for name in names:
        folder = runs_dir / name / VERSION
        path = folder / "results.json"
        if path.is_file():
            compute = {}
            for extra in ("fit_done.json", "test_done.json"):
                if (folder / extra).is_file():
                    compute.update(json.loads((folder / extra).read_text()))
            out[name] = {"results": json.loads(path.read_text()), "compute": compute,
                         "events": _event_data(_events(folder)), "archived": False}
        elif archive is not None and (archive / f"{name}.json").is_file():
            record = json.loads((archive / f"{name}.json").read_text())
            if not isinstance(record, dict) or not isinstance(record.get("results"), dict):
                raise ValueError(f"{archive / f'{name}.json'} is not a run record (no 'results' mapping)")
            out[name] = {"results": record["results"], "compute": record.get("compute", {}),
                         "events": record.get("events", {}), "archived": True}
    return out


def _get(data: Mapping | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _events(folder: Path):
    """A loaded TensorBoard ``EventAccumulator`` of a run folder (``None`` when unreadable)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        return None
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 1})
    acc.Reload()
    return acc


def _event_data(acc) -> dict:
    """The report's event data as JSON: ``{"histograms": {tag: {"edges", "counts"}}, "scalars": {tag: v}}``."""
    hists, scalars = {}, {}
    tags = acc.Tags() if acc is not None else {}
    for tag in EVENT_HISTOGRAMS:
        if tag not in tags.get("histograms", []):
            continue
        h = max(acc.Histograms(tag), key=lambda e: (e.step, e.wall_time)).histogram_value
        limits = np.asarray(h.bucket_limit, dtype=np.float64)
        counts = np.asarray(h.bucket, dtype=np.float64)
        if counts.size == 0:
            continue
        # bucket i covers (limit[i-1], limit[i]]; the outer edges are the data's min and max
        edges = np.maximum.accumulate(np.clip(np.concatenate([[h.min], limits]), h.min, h.max))
        hists[tag] = {"edges": edges.tolist(), "counts": counts.tolist()}
    for tag in EVENT_SCALARS:
        if tag in tags.get("scalars", []):
            scalars[tag] = float(acc.Scalars(tag)[-1].value)
    return {"histograms": hists, "scalars": scalars}


def _histogram(entry: Mapping | None, tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(edges (K+1,), counts (K,))`` of the last histogram logged as ``tag`` by the run ``entry``."""
    h = _get(entry, "events", "histograms", tag)
    if h is None:
        return None
    return np.asarray(h["edges"], dtype=np.float64), np.asarray(h["counts"], dtype=np.float64)


def _scalar(entry: Mapping | None, tag: str) -> float | None:
    value = _get(entry, "events", "scalars", tag)
    return None if value is None else float(value)


# ------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """One table: ``rows`` of raw values (the CSV) and their formatted cells (the markdown).

    Attributes:
        name: file stem (``uci`` -> ``uci.md``, ``uci.csv``).
        title: markdown heading.
        note: one paragraph under the heading.
        columns: CSV columns, in order.
        rows: CSV rows (numbers, strings, ``None``).
        md_columns: markdown header.
        md_rows: markdown cells.
    """

    name: str
    title: str
    note: str
    columns: list[str]
    rows: list[dict]
    md_columns: list[str]
    md_rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.note, "", "| " + " | ".join(self.md_columns) + " |",
                 "|" + "---|" * len(self.md_columns)]
        lines += ["| " + " | ".join(cells) + " |" for cells in self.md_rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in self.columns})
        return buf.getvalue()


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def _pm(mean: Any, std: Any, digits: int = 3) -> str:
    if mean is None:
        return "—"
    return _f(mean, digits) if std is None else f"{_f(mean, digits)} ± {_f(std, digits)}"


def _quality(res: Mapping | None, who: str = "flow") -> dict:
    """Accuracy / loss / diversity of ``samples.<who>`` as a flat dict of numbers."""
    q = _get(res, "samples", who) or {}
    return {k: q.get(k) for k in ("accuracy_mean", "accuracy_std", "loss_mean", "loss_std", "diversity",
                                  "n_networks", "canonical_loss_mean")}


def _compute_cells(entry: Mapping | None) -> dict:
    c = (entry or {}).get("compute", {})
    return {"iterations": c.get("iterations"), "fit_seconds": c.get("fit_seconds"),
            "test_seconds": c.get("test_seconds"), "machine": c.get("machine")}


def uci_tables(data: Mapping[str, dict]) -> list[Table]:
    variants = (("plain", ""), ("aligned", "_aligned"), ("aligned_ot", "_aligned_ot"))
    heads = {"plain": "plain", "aligned": "aligned", "aligned_ot": "aligned + OT"}
    ref = REFERENCE["uci"]
    cols = ["flow", "variant", "run", "accuracy_mean", "accuracy_std", "loss_mean", "loss_std", "n_networks",
            "ref_accuracy_mean", "ref_accuracy_std", "ref_loss_mean", "ref_loss_std", "iterations", "fit_seconds",
            "test_seconds", "machine"]
    rows, md = [], []
    for g in GEOMETRIES:
        cells = [TITLE[g]]
        for variant, suffix in variants:
            run = f"uci_{g}{suffix}"
            q = _quality(_get(data.get(run), "results"))
            (ra, rsa), (rl, rsl) = ref[(g, variant)]
            rows.append({"flow": g, "variant": variant, "run": run, **{k: q[k] for k in cols if k in q},
                         "ref_accuracy_mean": ra, "ref_accuracy_std": rsa, "ref_loss_mean": rl, "ref_loss_std": rsl,
                         **_compute_cells(data.get(run))})
            cells.append(f"{_pm(q['accuracy_mean'], q['accuracy_std'])} / {_pm(q['loss_mean'], q['loss_std'])}"
                         f" (ref {_pm(ra, rsa)} / {_pm(rl, rsl)})")
        md.append(cells)
    for g, run in zip(GEOMETRIES, UCI_MLP):
        q = _quality(_get(data.get(run), "results"))
        rows.append({"flow": f"{g}_mlp", "variant": "aligned", "run": run, **{k: q[k] for k in cols if k in q},
                     **_compute_cells(data.get(run))})
        md.append([f"{TITLE[g]}, MLP velocity field (`{run}`, not in the reference)", "",
                   f"{_pm(q['accuracy_mean'], q['accuracy_std'])} / {_pm(q['loss_mean'], q['loss_std'])}", ""])
    # the Adam-trained targets, from the first run that evaluated them: every run scores the zoo's
    # raw final networks (their original loss), so any geometry's run gives the same row
    names = [f"uci_{g}{s}" for g in ("euclidean", "normalized", "geometric") for _, s in variants]
    target = next((_quality(_get(data.get(n), "results"), "target")
                   for n in names if _get(data.get(n), "results", "samples", "target")), None)
    target = target or _quality(None)
    (ra, rsa), (rl, rsl) = ref[("target", "plain")]
    rows.append({"flow": "target", "variant": "adam_trained", "run": "zoo",
                 **{k: target[k] for k in cols if k in target}, "ref_accuracy_mean": ra, "ref_accuracy_std": rsa,
                 "ref_loss_mean": rl, "ref_loss_std": rsl})
    md.append(["Target (Adam-trained)", f"{_pm(target['accuracy_mean'], target['accuracy_std'])} / "
               f"{_pm(target['loss_mean'], target['loss_std'])} (ref {_pm(ra, rsa)} / {_pm(rl, rsl)})", "", ""])
    table = Table("uci", "UCI breast cancer: test accuracy / test loss of sampled networks (mean ± std)",
                  "Measured values, with the reference's (arXiv 2504.03710, Table 7.1) in parentheses. Losses of "
                  "Normalized and Geometric samples are those of the canonical weights (last layer at norm sqrt(C)).",
                  cols, rows, ["flow", *heads.values()], md)

    bcols = ["run", "population", "barrier_mean", "barrier_std", "ref_mean", "ref_std"]
    brows, bmd = [], []
    barrier_runs = [(g, variant, f"uci_{g}{suffix}") for g in GEOMETRIES for variant, suffix in variants]
    barrier_runs += [(f"{g}_mlp", "aligned", run) for g, run in zip(GEOMETRIES, UCI_MLP)]
    for g, variant, run in barrier_runs:
        res = _get(data.get(run), "results")
        for pop in ("zoo", "samples"):
            b = _get(res, "barrier", pop) or {}
            r = None
            if g == "euclidean" and pop == "zoo" and variant != "aligned_ot":
                r = REFERENCE["uci_barrier"]["before" if variant == "plain" else "after"]
            brows.append({"run": run, "population": pop, "barrier_mean": b.get("mean"),
                          "barrier_std": b.get("std"), "ref_mean": r[0] if r else None,
                          "ref_std": r[1] if r else None})
        z, s = _get(res, "barrier", "zoo") or {}, _get(res, "barrier", "samples") or {}
        ref_cell = ""
        if g == "euclidean" and variant != "aligned_ot":
            r = REFERENCE["uci_barrier"]["before" if variant == "plain" else "after"]
            ref_cell = _pm(*r)
        bmd.append([run, _pm(z.get("mean"), z.get("std")), ref_cell, _pm(s.get("mean"), s.get("std"))])
    barriers = Table("uci_barriers", "UCI breast cancer: pairwise midpoint loss barriers",
                     "Zoo barriers of the plain runs are before alignment, of the aligned runs after it (weight "
                     "matching); Normalized and Geometric runs measure them on canonical weights. Reference: "
                     "0.244 ± 0.009 before, 0.070 ± 0.001 after alignment.",
                     bcols, brows, ["run", "zoo barrier", "reference", "samples barrier"], bmd)
    return [table, barriers, _bma_table("uci", data, [n for _, _, n in barrier_runs])]


def mnist_tables(data: Mapping[str, dict]) -> list[Table]:
    ref = REFERENCE["mnist"]
    cols = ["flow", "coupling", "run", "accuracy_mean", "accuracy_std", "loss_mean", "loss_std", "diversity",
            "n_networks", "ref_accuracy_mean", "ref_accuracy_std", "ref_loss_mean", "ref_diversity", "iterations",
            "fit_seconds", "test_seconds", "machine"]
    rows, md = [], []

    def cell(q, r) -> str:
        (ra, rsa), rl, rd = r
        return (f"{_pm(q['accuracy_mean'], q['accuracy_std'])} / {_f(q['loss_mean'])} / {_f(q['diversity'], 5)}"
                f" (ref {_pm(ra, rsa)} / {_f(rl)} / {_f(rd, 5)})")

    def plain(q) -> str:
        return f"{_pm(q['accuracy_mean'], q['accuracy_std'])} / {_f(q['loss_mean'])} / {_f(q['diversity'], 5)}"

    for net in MNIST_NETS:
        for g in GEOMETRIES:
            # the reference has relational-transformer flows only; the MLP rows have no reference cells
            cells = [TITLE[g] + (", MLP velocity field (`model.net.kind: mlp`, not in the reference)" if net else "")]
            for coupling, suffix in (("independent", ""), ("ot", "_ot")):
                run = f"mnist_{g}{net}{suffix}"
                q = _quality(_get(data.get(run), "results"))
                (ra, rsa), rl, rd = ref[(g, coupling)] if not net else ((None, None), None, None)
                rows.append({"flow": g + net, "coupling": coupling, "run": run, **{k: q[k] for k in cols if k in q},
                             "ref_accuracy_mean": ra, "ref_accuracy_std": rsa, "ref_loss_mean": rl,
                             "ref_diversity": rd, **_compute_cells(data.get(run))})
                cells.append(plain(q) if net else cell(q, ref[(g, coupling)]))
            md.append(cells)
    for run, (label, coupling) in MNIST_EXTRA.items():
        q = _quality(_get(data.get(run), "results"))
        rows.append({"flow": "geometric", "coupling": coupling, "run": run, **{k: q[k] for k in cols if k in q},
                     **_compute_cells(data.get(run))})
        md.append([f"{label} (`{run}`, not in the reference)", plain(q), ""])
    names = [f"mnist_{g}{n}{s}" for n in MNIST_NETS for g in GEOMETRIES for s in ("", "_ot")] + list(MNIST_EXTRA)
    target = next((_quality(_get(data[n], "results"), "target") for n in names
                   if _get(data.get(n), "results", "samples", "target")), _quality(None))
    (ra, rsa), rl, rd = ref[("target", "independent")]
    rows.append({"flow": "target", "coupling": "sgd_trained", "run": "zoo", **{k: target[k] for k in cols if k in target},
                 "ref_accuracy_mean": ra, "ref_accuracy_std": rsa, "ref_loss_mean": rl, "ref_diversity": rd})
    md.append(["Target (SGD-trained)", cell(target, ref[("target", "independent")]), ""])
    table = Table("mnist", "MNIST 784-10-10 (aligned): accuracy / loss / diversity (mean pairwise JSD)",
                  "Measured values, with the reference's (Table 7.2) in parentheses.", cols, rows,
                  ["flow", "independent", "OT"], md)
    return [table, _bma_table("mnist", data, names)]


def _bma_table(group: str, data: Mapping[str, dict], names: Sequence[str]) -> Table:
    cols = ["run", "population", "k", "accuracy", "nll", "ece"]
    rows, md = [], []
    for name in names:
        bma = _get(data.get(name), "results", "bma") or {}
        for pop, points in bma.items():
            if pop == "target" and any(r["population"] == "target" for r in rows):
                continue
            pts = _bma_points(points)
            for p in pts:
                rows.append({"run": name if pop != "target" else "zoo", "population": pop, "k": p.k,
                             "accuracy": p.accuracy, "nll": p.nll, "ece": p.ece})
            if pts:
                md.append([name if pop != "target" else "target networks", pop, _f(pts[0].accuracy),
                           str(pts[-1].k), _f(pts[-1].accuracy), _f(pts[-1].nll), _f(pts[-1].ece)])
    note = ("Bayesian model averaging over the first k samples (k = 1 and the largest k shown; every k in the CSV). "
            + ("Reference: Euclidean (independent) reaches the accuracy of one SGD network; Geometric + OT goes from "
               "about 87% to about 94%." if group == "mnist" else ""))
    return Table(f"{group}_bma", f"{group.upper()}: Bayesian model averaging", note.strip(), cols, rows,
                 ["run", "population", "accuracy k=1", "k", "accuracy", "NLL", "ECE"], md)


def _bma_points(points: Mapping) -> list[BMAPoint]:
    pts = [BMAPoint(int(k[1:]), v.get("accuracy"), v.get("nll"), v.get("ece"))
           for k, v in points.items() if re.fullmatch(r"k\d+", k)]
    return sorted(pts, key=lambda p: p.k)


#: Result keys of ``StepsSweep``: ``unguided_steps64``, ``guided_steps64``, ``guided_lambda10_steps512``.
STEPS_SWEEP_KEY = re.compile(r"(?P<variant>unguided|guided(?:_lambda(?P<lam>[0-9.e+-]+))?)_steps(?P<steps>\d+)")


def _sweep_label(m: re.Match) -> str:
    """``guided_lambda10`` -> ``guided (lambda 10)``; ``guided`` / ``unguided`` unchanged."""
    return f"guided (lambda {m['lam']})" if m["lam"] else m["variant"]


def _sweep_order(key: str) -> tuple:
    """Sort key of ``StepsSweep`` results: guided before unguided, by lambda, then by steps."""
    m = STEPS_SWEEP_KEY.fullmatch(key)
    if not m:
        return (2, 0.0, 0, key)
    return (int(m["variant"] == "unguided"), float(m["lam"] or 0.0), int(m["steps"]), key)


def transfer_tables(data: Mapping[str, dict]) -> list[Table]:
    cols = ["experiment", "flow", "run", "accuracy_mean", "accuracy_std", "loss_mean", "n_networks", "reference",
            "test_seconds"]
    rows, md = [], []
    rg = REFERENCE["transfer_guided"]
    flows = {**{g: TITLE[g] for g in GEOMETRIES}, **TRANSFER_EXTRA}
    for g, title in flows.items():
        run = f"transfer_guided_{g}"
        res = _get(data.get(run), "results")
        q = _quality(res)
        rows.append({"experiment": "guided (lambda 0.1, 512 steps)", "flow": g, "run": run,
                     **{k: q[k] for k in cols if k in q}, "reference": rg.get(g),
                     "test_seconds": _compute_cells(data.get(run))["test_seconds"]})
        md.append(["guided toward the transfer task, 512 steps", title, _pm(q["accuracy_mean"], q["accuracy_std"]),
                   _f(rg.get(g))])
        un = _get(res, "steps_sweep") or {}
        for key, v in sorted(un.items(), key=lambda kv: _sweep_order(kv[0])):
            m = STEPS_SWEEP_KEY.fullmatch(key)
            if m:
                label = f"{_sweep_label(m)}, {m['steps']} steps (sweep)"
                rows.append({"experiment": label, "flow": g, "run": run, "accuracy_mean": v.get("accuracy_mean"),
                             "accuracy_std": v.get("accuracy_std"), "loss_mean": v.get("loss_mean"),
                             "n_networks": v.get("n_networks"),
                             "reference": rg["unguided"] if m["variant"] == "unguided" else None})
                md.append([label, title, _pm(v.get("accuracy_mean"), v.get("accuracy_std")),
                           _f(rg["unguided"]) if m["variant"] == "unguided" else ""])
    tq = _get(data.get("transfer_target"), "results", "target") or {}
    rows.append({"experiment": "trained on the transfer task", "flow": "target", "run": "transfer_target",
                 "accuracy_mean": tq.get("accuracy_mean"), "accuracy_std": tq.get("accuracy_std"),
                 "loss_mean": tq.get("loss_mean"), "n_networks": tq.get("n_networks"), "reference": rg["target"]})
    md.append(["trained on the transfer task (zoo targets)", "—", _pm(tq.get("accuracy_mean"), tq.get("accuracy_std")),
               f"{_f(rg['target'])} (Fashion-MNIST)"])
    rw = REFERENCE["transfer_wide"]
    for g in GEOMETRIES:
        for guided in (False, True):
            run = f"transfer_wide_{'guided_' if guided else ''}{g}"
            q = _quality(_get(data.get(run), "results"))
            r = rw[g][1 if guided else 0]
            label = f"784-32-10 samples{' (guided)' if guided else ''}"
            rows.append({"experiment": label, "flow": g, "run": run, **{k: q[k] for k in cols if k in q},
                         "reference": r, "test_seconds": _compute_cells(data.get(run))["test_seconds"]})
            md.append([label, TITLE[g], _pm(q["accuracy_mean"], q["accuracy_std"]), _f(r)])
    for flow, title in WIDE_EXTRA.items():
        run = f"transfer_wide_{flow}"
        q = _quality(_get(data.get(run), "results"))
        rows.append({"experiment": "784-32-10 samples", "flow": flow, "run": run,
                     **{k: q[k] for k in cols if k in q}, "test_seconds": _compute_cells(data.get(run))["test_seconds"]})
        md.append(["784-32-10 samples", title, _pm(q["accuracy_mean"], q["accuracy_std"]), ""])
    for g, title in {"geometric": TITLE["geometric"], **TRANSFER_EXTRA}.items():
        run = f"transfer_init_{g}"
        init = _get(data.get(run), "results", "learned_init") or {}
        for label, c in init.items():
            rows.append({"experiment": f"learned init ({label}), final accuracy", "flow": g,
                         "run": run, "accuracy_mean": c.get("final_accuracy")})
            md.append([f"training from {label} initialisation: first / final accuracy", title,
                       f"{_f(c.get('first_accuracy_after_start'))} / {_f(c.get('final_accuracy'))}", ""])
    task = _get(data.get("transfer_target"), "results", "zoo", "task") or "mnist_permuted"
    what = ("the reference's task" if task == "fashion_mnist" else
            "MNIST with a fixed pixel permutation, the offline stand-in for the reference's Fashion-MNIST"
            if task == "mnist_permuted" else "in place of the reference's Fashion-MNIST")
    note = (f"Transfer task: `{task}` ({what}); references are the Fashion-MNIST numbers. Sample accuracies are on "
            "the task named in each row (the transfer task for guided and learned-initialisation rows, MNIST for "
            "784-32-10 rows).")
    return [Table("transfer", "MNIST transfer: guided sampling, wider networks, learned initialisation", note, cols,
                  rows, ["experiment", "flow", "accuracy", "reference"], md)]


def toy_tables(data: Mapping[str, dict]) -> list[Table]:
    entry = data.get("gaussian_euclidean")
    rows, md = [], []
    for eps in (0.0, 0.05):
        mean = _scalar(entry, f"samples/weight_mean_eps{eps:g}/mean")
        std = _scalar(entry, f"samples/weight_mean_eps{eps:g}/std")
        rows.append({"epsilon": eps, "weight_mean_mean": mean, "weight_mean_std": std, "target_mean": 1.0})
        md.append([f"{eps:g}", _pm(mean, std), "1 (N(1, I))"])
    return [Table("toy", "Gaussian toy: mean weight of sampled networks",
                  "Mean over a sampled network's 802 weights, mean ± std over samples, deterministic (epsilon 0) "
                  "and stochastic sampling; the target distribution is N(1, I) (reference Figure 7.1).",
                  ["epsilon", "weight_mean_mean", "weight_mean_std", "target_mean"], rows,
                  ["epsilon", "sample weight mean", "target"], md)]


# ------------------------------------------------------------------------------ figures
def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _figure(n_axes: int = 1, width: float = 5.5, height: float = 3.8) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * n_axes, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, n_axes, squeeze=False)[0])


def bucket_values(edges: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each bucket's centre repeated by its count: the values a TensorBoard histogram stands for."""
    centres = 0.5 * (edges[:-1] + edges[1:])
    return np.repeat(centres, np.rint(counts).astype(np.int64))


def plot_init(curves: Mapping[str, Mapping]) -> Figure:
    """Mean test accuracy against training steps, one line per initialisation."""
    fig, (ax,) = _figure()
    for label, c in curves.items():
        ax.plot(c["steps"], c["accuracy_mean"], marker="o", label=f"{label} initialisation")
    ax.set_xlabel("training steps on the transfer task")
    ax.set_ylabel("test accuracy (mean over networks)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _steps_sweep_figure(data: Mapping[str, dict], names: Sequence[str]) -> Figure | None:
    steps, acc, loss = None, {}, {}
    for name in names:
        sweep = _get(data.get(name), "results", "steps_sweep") or {}
        by_label: dict[str, dict[int, Mapping]] = {}
        for key, v in sweep.items():
            m = STEPS_SWEEP_KEY.fullmatch(key)
            if m:
                by_label.setdefault(m["variant"], {})[int(m["steps"])] = v
        for label, points in by_label.items():
            s = sorted(points)
            if steps is None:
                steps = s
            if s != steps:
                continue
            acc[f"{name} {label}"] = [points[k]["accuracy_mean"] for k in s]
            loss[f"{name} {label}"] = [points[k]["loss_mean"] for k in s]
    if not acc:
        return None
    return plot_steps_sweep(steps, acc, loss)


def _bma_figure(data: Mapping[str, dict], names: Sequence[str]) -> Figure | None:
    curves = {}
    for name in names:
        for pop, points in (_get(data.get(name), "results", "bma") or {}).items():
            label = name if pop == "samples" else "target networks"
            pts = _bma_points(points)
            if pts and label not in curves:
                curves[label] = pts
    return plot_bma(curves) if curves else None


def _barrier_figure(data: Mapping[str, dict], names: Sequence[str]) -> Figure | None:
    hists = {}
    for name in names:
        entry = data.get(name)
        if entry is None:
            continue
        for pop in ("zoo", "samples"):
            h = _histogram(entry, f"barrier/{pop}")
            if h is not None:
                hists[f"{name} {pop}"] = bucket_values(*h)
    return plot_histograms(hists, "midpoint loss barrier") if hists else None


def figures(group: str, data: Mapping[str, dict], out: Path) -> list[Path]:
    """Render the group's figures into ``out``; returns the files written."""
    written = []

    def save(fig: Figure | None, stem: str) -> None:
        if fig is None:
            log.warning("no data for figure %s", stem)
            return
        written.append(_save(fig, out / f"{stem}.png"))

    if group == "toy":
        entry = data.get("gaussian_euclidean")
        hists = {("deterministic" if e == 0 else f"stochastic (epsilon {e:g})"): bucket_values(*h)
                 for e in (0.0, 0.05) if (h := _histogram(entry, f"samples/weight_mean_eps{e:g}")) is not None}
        save(plot_histograms(hists, "mean weight of a sampled network") if hists else None,
             "toy_weight_means")
    elif group == "uci":
        names = [f"uci_{g}{s}" for g in GEOMETRIES for s in ("", "_aligned", "_aligned_ot")]
        # before / after alignment: the Euclidean runs hold raw (not canonical) zoo weights
        save(_barrier_figure(data, ["uci_euclidean", "uci_euclidean_aligned"]), "uci_barriers")
        save(_steps_sweep_figure(data, [f"uci_{g}_aligned" for g in GEOMETRIES]), "uci_steps_sweep")
        save(_bma_figure(data, names), "uci_bma")
    elif group == "mnist":
        names = [f"mnist_{g}{n}{s}" for n in MNIST_NETS for g in GEOMETRIES for s in ("", "_ot")] + list(MNIST_EXTRA)
        save(_barrier_figure(data, ["mnist_euclidean", "mnist_geometric", "mnist_geometric_mlp"]), "mnist_barriers")
        save(_steps_sweep_figure(data, names), "mnist_steps_sweep")
        save(_bma_figure(data, names), "mnist_bma")
    elif group == "transfer":
        for g in ("geometric", *TRANSFER_EXTRA):
            init = _get(data.get(f"transfer_init_{g}"), "results", "learned_init")
            save(plot_init(init) if init else None, "transfer_init" if g == "geometric" else f"transfer_init_{g}")
        save(_steps_sweep_figure(data, [f"transfer_guided_{g}" for g in (*GEOMETRIES, *TRANSFER_EXTRA)]),
             "transfer_steps_sweep")
    return written


# ------------------------------------------------------------------------------- report
TABLES = {"toy": toy_tables, "uci": uci_tables, "mnist": mnist_tables, "transfer": transfer_tables}


def write_report(groups: Sequence[str], runs: Sequence, runs_dir: Path, out: Path) -> list[Path]:
    """Write ``<out>/<group>.md`` (all of a group's tables), one CSV per table, the figures, and
    ``<out>/runs/<name>.json`` (each run's results and compute) for the given groups."""
    written: list[Path] = []
    for group in groups:
        names = [r.name for r in runs if r.group == group]
        data = collect(names, runs_dir, archive=out / "runs")
        archived = [n for n in names if n in data and data[n]["archived"]]
        log.info("report %s: %d of %d runs have results (%d from %s)", group, len(data), len(names),
                 len(archived), out / "runs")
        for name, entry in data.items():
            if entry["archived"]:
                continue
            path = out / "runs" / f"{name}.json"
            atomic_write_json(path, {"results": entry["results"], "compute": entry["compute"],
                                     "events": entry["events"]})
            written.append(path)
        tables = TABLES[group](data)
        missing = [n for n in names if n not in data]
        text = (f"# Reproduction: {group}\n\nGenerated by `python -m lightning_wflow.reproduce {group}` from the "
                f"runs under `{runs_dir}`; every run's numbers and compute are in `runs/<name>.json`.\n")
        if archived:
            text += (f"\nRead from their records in `runs/` (run folders not present when this was written): "
                     f"{', '.join(archived)}.\n")
        if missing:
            text += f"\nRuns without results (empty cells): {', '.join(missing)}.\n"
        for table in tables:
            text += "\n" + table.markdown()
            path = out / f"{table.name}.csv"
            atomic_write_text(path, table.csv())
            written.append(path)
        figs = figures(group, data, out)
        if figs:
            text += "\n## Figures\n\n" + "".join(f"![{p.stem}]({p.name})\n" for p in figs)
        path = out / f"{group}.md"
        atomic_write_text(path, text)
        written += [path, *figs]
    return written
