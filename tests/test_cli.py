"""The CLI end to end on the tiny Gaussian config, in-process."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from lightning_wflow.cli import main
from lightning_wflow.weights import load_samples, load_sequentials

from pathlib import Path

TINY = str(Path(__file__).parent / "configs" / "tiny_gaussian.yaml")


def _events(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"histograms": 0, "scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_fit_writes_tensorboard_and_predict_writes_sample_file(in_tmp):
    cli = main(["fit", "--config", TINY])
    run_dir = in_tmp / cli.trainer.log_dir
    acc = _events(run_dir)
    tags = acc.Tags()
    assert "train/loss" in tags["scalars"] and "val/loss" in tags["scalars"]
    assert {"samples/weight_mean_eps0", "samples/weight_mean_eps0.05"} <= set(tags["histograms"])
    assert "samples/weight_mean_histogram" in tags["images"]
    ckpt = next((run_dir / "checkpoints").glob("*.ckpt"))

    out = in_tmp / "samples.safetensors"
    main(["predict", "--config", TINY, "--ckpt_path", str(ckpt), "--samples.output", str(out)])
    f = load_samples(out)
    assert f.flat.shape == (6, 37) and f.metadata["geometry"] == "euclidean"
    assert f.metadata["sampling"]["steps"] == 3 and f.metadata["task"] == "gaussian"
    nets = load_sequentials(out)
    assert len(nets) == 6 and all(isinstance(n, nn.Sequential) for n in nets)
    assert nets[0](torch.randn(3, 4)).shape == (3, 2)


def test_overrides_and_print_config(in_tmp, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", TINY, "--model.net.d_model", "12", "--trainer.max_steps", "7",
              "--print_config"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "d_model: 12" in out and "max_steps: 7" in out
    # the architecture is linked from data: into model:
    assert "layer_sizes:\n  - 4\n  - 5\n  - 2" in out or "layer_sizes: [4, 5, 2]" in out


def test_bad_inputs_fail_fast(in_tmp):
    with pytest.raises(SystemExit):
        main(["fit", "--config", TINY, "--model.no_such_option", "1"])
    with pytest.raises((SystemExit, ValueError)):
        main(["fit", "--config", TINY, "--data.layer_sizes", "[4]"])
    with pytest.raises((SystemExit, ValueError)):
        main(["fit", "--config", TINY, "--model.geometry", "hyperbolic"])
    with pytest.raises((SystemExit, ValueError)):
        main(["fit", "--config", TINY, "--model.net.edge_scaling", "fanin"])
    assert not (in_tmp / "logs").exists() or not any((in_tmp / "logs").rglob("*.ckpt"))


def test_checkpoint_with_other_architecture_is_refused(in_tmp):
    cli = main(["fit", "--config", TINY])
    ckpt = next((in_tmp / cli.trainer.log_dir / "checkpoints").glob("*.ckpt"))
    out = in_tmp / "wide.safetensors"
    with pytest.raises((ValueError, RuntimeError), match="layer_sizes"):
        main(["predict", "--config", TINY, "--ckpt_path", str(ckpt), "--data.layer_sizes", "[4, 6, 2]",
              "--samples.output", str(out)])
    assert not out.exists()


def test_resume_from_last_checkpoint_continues_the_run(in_tmp):
    first = main(["fit", "--config", TINY])
    run = in_tmp / first.trainer.log_dir
    assert (run / "checkpoints" / "last.ckpt").is_file()
    second = main(["fit", "--config", TINY, "--ckpt_path", "last", "--trainer.max_steps", "6"])
    assert second.trainer.global_step == 6
    assert in_tmp / second.trainer.log_dir == run  # same folder, curves continue


def test_resume_without_checkpoint_says_so(in_tmp):
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        main(["fit", "--config", TINY, "--ckpt_path", "last"])
