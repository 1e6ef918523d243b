"""The experiment configs parse, and the reproduce command runs a tiny grid end to end:
tables (markdown + CSV) and figures (PNG) are written and parse, a second invocation skips
the finished runs."""

import csv
import io
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import yaml

import lightning_wflow.cli
from lightning_wflow import reproduce
from lightning_wflow.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(p.name for p in CONFIGS.glob("*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_config_parses(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["fit", "--config", str(CONFIGS / name), "--print_config"])
    assert e.value.code == 0
    assert "max_steps" in capsys.readouterr().out


def test_grid_refers_to_existing_configs_and_checkpoints():
    runs = reproduce.grid()
    names = {r.name for r in runs}
    assert len(names) == len(runs)
    for run in runs:
        assert (CONFIGS / run.config).is_file(), run.config
        if run.callbacks_from:
            assert (CONFIGS / run.callbacks_from).is_file(), run.callbacks_from
        if run.ckpt_from:
            assert run.ckpt_from in names and next(r for r in runs if r.name == run.ckpt_from).ckpt_from is None
    assert {r.name for r in reproduce.select(["uci"])} == {
        f"uci_{g}{v}" for g in ("euclidean", "normalized", "geometric")
        for v in ("", "_aligned", "_aligned_ot", "_aligned_mlp")}
    with pytest.raises(ValueError, match="unknown run names"):
        reproduce.select(["uci"], only=["mnist_geometric"])


def test_transfer_configs_describe_the_mnist_geometric_flow():
    """A transfer config evaluates an mnist_geometric checkpoint: same model (but sampling) and data."""
    base = yaml.safe_load((CONFIGS / "mnist_geometric.yaml").read_text())
    for name in ("transfer_guided.yaml", "transfer_init.yaml", "transfer_wide.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        assert cfg["data"] == base["data"], name
        strip = lambda m: {k: v for k, v in m.items() if k != "sampling"}  # noqa: E731
        assert strip(cfg["model"]) == strip(base["model"]), name


def test_effective_config_applies_the_grid_changes(tmp_path):
    opts = reproduce.Options(configs=CONFIGS, runs=tmp_path / "runs", max_steps=123, data_root="/data")
    run = next(r for r in reproduce.grid() if r.name == "transfer_wide_guided_euclidean")
    cfg = reproduce.effective_config(run, opts)
    base = yaml.safe_load((CONFIGS / "mnist_euclidean.yaml").read_text())
    assert cfg["model"]["geometry"] == "euclidean" and cfg["data"]["canonicalize"] is False
    assert cfg["model"]["net"] == base["model"]["net"]
    (cb,) = cfg["trainer"]["callbacks"]
    assert cb["init_args"]["layer_sizes"] == [784, 32, 10] and cb["init_args"]["guidance_scale"] == 0.1
    assert cb["init_args"]["on_fit_end"] is False
    assert cfg["trainer"]["max_steps"] == 123 and cfg["trainer"]["val_check_interval"] == 123
    assert cfg["trainer"]["logger"]["init_args"] == {"save_dir": str(tmp_path / "runs"), "name": run.name,
                                                     "version": 0}
    assert cfg["data"]["data_root"] == "/data"
    tiny = reproduce.effective_config(run, reproduce.Options(configs=CONFIGS, runs=tmp_path, tiny=True))
    assert tiny["trainer"]["max_steps"] == 4 and tiny["data"]["n_runs"] == 4
    assert tiny["trainer"]["callbacks"][0]["init_args"]["n_samples"] == 4


def test_transfer_runs_use_fashion_mnist_when_its_files_are_present(tmp_path):
    root = tmp_path / "data"
    opts = reproduce.Options(configs=CONFIGS, runs=tmp_path / "runs", data_root=str(root))
    guided = next(r for r in reproduce.grid() if r.name == "transfer_guided_geometric")
    tasks = lambda cfg: [cb["init_args"].get("task") for cb in cfg["trainer"]["callbacks"]]  # noqa: E731
    assert reproduce.transfer_task(opts) == "mnist_permuted"
    assert set(tasks(reproduce.effective_config(guided, opts))) == {"mnist_permuted"}
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes(b"")
    assert reproduce.transfer_task(opts) == "mnist_permuted"  # one file missing: not the data set
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")
    assert reproduce.transfer_task(opts) == "fashion_mnist"
    assert set(tasks(reproduce.effective_config(guided, opts))) == {"fashion_mnist"}
    # other groups keep their tasks; an explicit choice wins
    mnist = next(r for r in reproduce.grid() if r.name == "mnist_geometric")
    assert "fashion_mnist" not in tasks(reproduce.effective_config(mnist, opts))
    explicit = reproduce.Options(configs=CONFIGS, runs=tmp_path / "runs", data_root=str(root),
                                 transfer_task="mnist_permuted")
    assert set(tasks(reproduce.effective_config(guided, explicit))) == {"mnist_permuted"}
    with pytest.raises(ValueError, match=r"transfer task must be one of \['auto'"):
        reproduce.transfer_task(reproduce.Options(configs=CONFIGS, runs=tmp_path, transfer_task="cifar10"))


def _check_outputs(out: Path, tables: list[str], figures: list[str]) -> None:
    for stem in tables:
        rows = list(csv.DictReader(io.StringIO((out / f"{stem}.csv").read_text())))
        assert rows, stem
    for stem in figures:
        path = out / f"{stem}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC, stem
        assert matplotlib.image.imread(path).ndim == 3


def _forbid_cli(monkeypatch):
    def refuse(args=None):
        raise AssertionError(f"a finished run was run again: {args}")

    monkeypatch.setattr(lightning_wflow.cli, "main", refuse)


def test_reproduce_tiny_uci_grid_writes_tables_and_figures_then_skips(in_tmp, monkeypatch):
    args = ["uci", "--tiny", "--runs", "runs", "--out", "out",
            "--only", "uci_euclidean", "uci_euclidean_aligned", "uci_geometric_aligned_ot", "uci_geometric_aligned_mlp"]
    # a dry run says what it would do and writes nothing
    assert reproduce.main([*args, "--dry-run"]) == []
    assert not (in_tmp / "runs").exists() and not (in_tmp / "out").exists()

    written = reproduce.main(args)
    out = in_tmp / "out"
    assert Path("out/uci.md") in written
    md = (out / "uci.md").read_text()
    assert "| Euclidean |" in md and "(ref 0.998 ± 0.006 / 0.101 ± 0.050)" in md
    assert "| Target (Adam-trained) |" in md and "0.244 ± 0.009" in md
    rows = {r["run"]: r for r in csv.DictReader(io.StringIO((out / "uci.csv").read_text()))}
    acc = float(rows["uci_geometric_aligned_ot"]["accuracy_mean"])
    assert 0.0 <= acc <= 1.0 and rows["uci_geometric_aligned_ot"]["iterations"] == "4"
    assert rows["uci_normalized"]["accuracy_mean"] == ""  # not run: an empty cell, not a failure
    # the MLP velocity field's row: measured, no reference
    assert 0.0 <= float(rows["uci_geometric_aligned_mlp"]["accuracy_mean"]) <= 1.0
    assert rows["uci_geometric_aligned_mlp"]["ref_accuracy_mean"] == ""
    assert "| Geometric, MLP velocity field (`uci_geometric_aligned_mlp`, not in the reference) |" in md
    assert float(rows["uci_normalized"]["ref_accuracy_mean"]) == 0.993
    barriers = list(csv.DictReader(io.StringIO((out / "uci_barriers.csv").read_text())))
    assert {(r["run"], r["population"]) for r in barriers if r["barrier_mean"]} >= {
        ("uci_euclidean", "zoo"), ("uci_euclidean_aligned", "zoo"), ("uci_euclidean", "samples")}
    _check_outputs(out, ["uci", "uci_barriers", "uci_bma"], ["uci_barriers", "uci_steps_sweep", "uci_bma"])
    assert (out / "runs" / "uci_euclidean.json").is_file()

    # the second invocation finds every result and only rewrites the report
    results = in_tmp / "runs" / "uci_euclidean" / "version_0" / "results.json"
    before = results.stat().st_mtime_ns
    _forbid_cli(monkeypatch)
    assert reproduce.run_grid(reproduce.select(["uci"], args[-4:]),
                              reproduce.Options(configs=CONFIGS, runs=Path("runs"), tiny=True)) == {
        n: "skip" for n in args[-4:]}
    reproduce.main(args)
    assert results.stat().st_mtime_ns == before

    # a fresh clone has the committed records but no run folders: re-running the report keeps
    # every run's cells and histograms, read back from out/runs/<name>.json
    table_before = (out / "uci.csv").read_text()
    record = (out / "runs" / "uci_euclidean.json").read_text()
    assert '"barrier/zoo"' in record
    shutil.rmtree(in_tmp / "runs")
    (out / "uci_barriers.png").unlink()
    reproduce.main([*args, "--report-only"])
    assert (out / "uci.csv").read_text() == table_before
    assert (out / "runs" / "uci_euclidean.json").read_text() == record
    md = (out / "uci.md").read_text()
    assert "Read from their records in `runs/`" in md and "uci_geometric_aligned_ot" in md
    _check_outputs(out, ["uci", "uci_barriers"], ["uci_barriers"])
    (out / "runs" / "uci_euclidean.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="uci_euclidean.json is not a run record"):
        reproduce.main([*args, "--report-only"])


def test_reproduce_tiny_transfer_and_toy(in_tmp, shared_data_root, monkeypatch):
    args = ["toy", "transfer", "--tiny", "--runs", "runs", "--out", "out", "--data-root", shared_data_root,
            "--only", "gaussian_euclidean", "transfer_target", "transfer_guided_geometric", "transfer_init_geometric",
            "transfer_guided_geometric_mlp", "transfer_wide_geometric_long"]
    reproduce.main(args)
    out = in_tmp / "out"
    # the transfer runs evaluated the (tiny) MNIST Geometric flows, each trained once
    assert (in_tmp / "runs" / "mnist_geometric" / "version_0" / "fit_done.json").is_file()
    assert (in_tmp / "runs" / "mnist_geometric_mlp" / "version_0" / "fit_done.json").is_file()
    rows = list(csv.DictReader(io.StringIO((out / "transfer.csv").read_text())))
    guided = next(r for r in rows if r["run"] == "transfer_guided_geometric")
    assert 0.0 <= float(guided["accuracy_mean"]) <= 1.0 and float(guided["reference"]) == 0.730
    guided_mlp = next(r for r in rows if r["run"] == "transfer_guided_geometric_mlp")
    assert 0.0 <= float(guided_mlp["accuracy_mean"]) <= 1.0 and guided_mlp["reference"] == ""
    assert "Geometric, MLP field" in (out / "transfer.md").read_text()
    # the guidance-strength sweep of transfer_guided.yaml: one row per lambda
    sweep = {r["experiment"] for r in rows if r["run"] == "transfer_guided_geometric"}
    assert {f"guided (lambda {lam}), 4 steps (sweep)" for lam in (1, 10, 100)} <= sweep
    assert "unguided, 4 steps (sweep)" in sweep
    # a 784-32-10 row from a relational-transformer flow beyond the reference's three
    wide = next(r for r in rows if r["run"] == "transfer_wide_geometric_long")
    assert wide["experiment"] == "784-32-10 samples" and 0.0 <= float(wide["accuracy_mean"]) <= 1.0
    target = next(r for r in rows if r["run"] == "transfer_target")
    assert float(target["accuracy_mean"]) > 0.2
    assert "learned init (flow), final accuracy" in {r["experiment"] for r in rows}
    _check_outputs(out, ["transfer", "toy"], ["transfer_init", "transfer_steps_sweep", "toy_weight_means"])
    toy = list(csv.DictReader(io.StringIO((out / "toy.csv").read_text())))
    assert [r["epsilon"] for r in toy] == ["0.0", "0.05"] and toy[0]["weight_mean_mean"] != ""

    _forbid_cli(monkeypatch)
    reproduce.main(args)


@pytest.mark.parametrize("prefix, zoo", [("uci_", "uci"), ("mnist_", "mnist"), ("transfer_", "mnist")])
def test_experiment_zoos_are_the_reference_zoo_configs(prefix, zoo):
    """Every experiment of a table trains on the zoo of configs/zoo/<zoo>.yaml (one cache entry)."""
    from lightning_wflow.lit import WeightZooDataModule
    from lightning_wflow.zoo import ZooConfig

    raw = yaml.safe_load((CONFIGS / "zoo" / f"{zoo}.yaml").read_text())
    fields = {k: v for k, v in raw.items() if k in ZooConfig.__dataclass_fields__}
    want = ZooConfig(**{**fields, "layer_sizes": tuple(fields["layer_sizes"])}).key()
    for path in sorted(CONFIGS.glob(f"{prefix}*.yaml")):
        data = yaml.safe_load(path.read_text())["data"]
        assert WeightZooDataModule(**data).zoo_config.key() == want, path.name


def test_a_failed_run_is_reported_after_the_other_runs_and_the_report(in_tmp, monkeypatch):
    def broken(run, opts):
        raise OSError("disk full")

    monkeypatch.setattr(reproduce, "_zoo_target", broken)
    with pytest.raises(RuntimeError, match="transfer_target.*disk full"):
        reproduce.main(["transfer", "--tiny", "--runs", "runs", "--out", "out", "--only", "transfer_target"])
    assert "Runs without results" in (in_tmp / "out" / "transfer.md").read_text()
    assert (in_tmp / "out" / "transfer.csv").is_file()
