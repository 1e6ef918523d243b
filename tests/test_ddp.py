"""Two CPU processes (gloo): fit and test run, and the sample metrics equal a single process's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_wflow.cli import main

CFG = str(Path(__file__).parent / "configs" / "tiny_uci_ddp.yaml")


def _cli(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "lightning_wflow", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ddp_fit_and_test_match_single_process(in_tmp):
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    _cli(["fit", "--config", CFG, *ddp, "--trainer.logger.init_args.name", "ddp"], in_tmp)
    ckpt = in_tmp / "logs" / "ddp" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    # the zoo was built once (one cache entry), not once per rank
    assert len([p for p in (in_tmp / "logs" / "zoo_cache").iterdir() if p.is_dir()]) >= 1

    _cli(["test", "--config", CFG, *ddp, "--ckpt_path", str(ckpt), "--trainer.logger.init_args.name", "ddp_test"],
         in_tmp)
    single = main(["test", "--config", CFG, "--ckpt_path", str(ckpt), "--trainer.logger.init_args.name", "single"])
    r_ddp = json.loads((in_tmp / "logs" / "ddp_test" / "version_0" / "results.json").read_text())
    r_one = json.loads((in_tmp / single.trainer.log_dir / "results.json").read_text())
    for key in ("accuracy_mean", "accuracy_std", "loss_mean", "loss_std", "diversity", "n_networks"):
        assert r_ddp["samples"]["flow"][key] == pytest.approx(r_one["samples"]["flow"][key], rel=1e-4, abs=1e-6), key
    assert r_ddp["barrier"]["samples"]["mean"] == pytest.approx(r_one["barrier"]["samples"]["mean"], rel=1e-3, abs=1e-6)
    # only rank zero wrote: one results file per run folder
    assert len(list((in_tmp / "logs" / "ddp_test").rglob("results.json"))) == 1
