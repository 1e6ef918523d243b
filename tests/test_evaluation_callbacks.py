"""End to end: fit a tiny UCI Geometric flow, ``test`` it with every evaluation callback,
read the results JSON and the TensorBoard events back."""

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_wflow.cli import main
from lightning_wflow.lit import SampleQuality, StepsSweep
from lightning_wflow.lit.config import SamplingConfig
from lightning_wflow.weights import load_samples

CFG = Path(__file__).parent / "configs"
UCI = str(CFG / "tiny_uci_geometric.yaml")


def test_fit_then_test_writes_results_and_events(in_tmp):
    fit = main(["fit", "--config", UCI])
    ckpt = next((in_tmp / fit.trainer.log_dir / "checkpoints").glob("*.ckpt"))
    cli = main(["test", "--config", UCI, "--ckpt_path", str(ckpt)])
    run = in_tmp / cli.trainer.log_dir
    res = json.loads((run / "results.json").read_text())
    assert res["flow"]["geometry"] == "geometric" and res["flow"]["test_loss"] > 0
    s = res["samples"]["flow"]
    assert 0.0 <= s["accuracy_mean"] <= 1.0 and s["loss_mean"] > 0 and s["n_networks"] == 4
    assert 0.0 <= s["diversity"] <= torch.log(torch.tensor(2.0)).item()
    t = res["samples"]["target"]
    assert t["n_networks"] == 6 and t["accuracy_mean"] > 0.5 and t["canonical_loss_mean"] > 0
    assert set(res["steps_sweep"]) == {"unguided_steps2", "unguided_steps4", "guided_steps2", "guided_steps4"}
    assert set(res["barrier"]) == {"samples", "zoo"}
    assert res["likelihood"]["heldout"]["nll_mean"] == res["likelihood"]["heldout"]["nll_mean"]  # finite, not NaN
    # BMA of one sample equals that sample's accuracy for the first drawn network's own metrics
    assert set(res["bma"]["samples"]) == {"k1", "k2", "k4"}
    assert res["learned_init"]["flow"]["steps"] == [0, 2, 4]
    assert (run / "results.md").read_text().startswith("# uci_breast_cancer / geometric flow")

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("samples/flow/accuracy_mean", "samples/flow/diversity", "barrier/zoo/mean",
                "likelihood/heldout/nll_mean", "bma/samples/k4/ece", "learned_init/flow/final_accuracy"):
        assert tag in tags["scalars"], tag
    for tag in ("samples/steps_sweep", "barrier/histogram", "bma/curve", "learned_init/curves"):
        assert tag in tags["images"], tag
    assert "barrier/zoo" in tags["histograms"]


@pytest.mark.parametrize("geometry", ["geometric", "normalized"])
def test_canonical_flows_sample_on_the_manifold(in_tmp, geometry):
    over = ["--model.geometry", geometry, "--trainer.callbacks", "[]"]
    fit = main(["fit", "--config", UCI, *over])
    ckpt = next((in_tmp / fit.trainer.log_dir / "checkpoints").glob("*.ckpt"))
    out = in_tmp / "s.safetensors"
    main(["predict", "--config", UCI, *over, "--ckpt_path", str(ckpt), "--samples.output", str(out)])
    f = load_samples(out)
    (w0, _), (w1, _), (w2, _) = f.spec.unflatten(f.flat)
    for w in (w0, w1):  # every hidden neuron's incoming weights on the unit sphere
        torch.testing.assert_close(w.norm(dim=-1), torch.ones(w.shape[:2]), atol=1e-4, rtol=0)
    torch.testing.assert_close(w2.flatten(1).norm(dim=-1), torch.full((4,), 2**0.5), atol=1e-4, rtol=0)
    assert f.metadata["task_metadata"]["name"] == "uci_breast_cancer" or "task_metadata" in f.metadata


def test_uncanonical_data_is_refused_for_geometric_flow(in_tmp):
    with pytest.raises(ValueError, match="canonical"):
        main(["fit", "--config", UCI, "--data.canonicalize", "false", "--trainer.callbacks", "[]"])


def test_bad_callback_settings_fail_at_configuration():
    with pytest.raises(ValueError, match="n_samples"):
        SampleQuality(n_samples=0)
    with pytest.raises(ValueError, match="epsilon"):
        SampleQuality(epsilon=-0.1)
    with pytest.raises(ValueError, match="steps"):
        StepsSweep(steps=[0, 4])
    with pytest.raises(ValueError, match="guidance_scale"):
        StepsSweep(guidance_scale=[1.0, -2.0])
    with pytest.raises(ValueError, match="guidance_scale"):
        StepsSweep(guidance_scale=[])
    assert list(StepsSweep(guidance_scale=[0.5, 20.0]).variants) == ["unguided", "guided_lambda0.5", "guided_lambda20"]
    assert list(StepsSweep(guidance_scale=0.0).variants) == ["unguided"]
    with pytest.raises(ValueError, match="sampling.steps"):
        SamplingConfig(steps=0)
    with pytest.raises(ValueError, match="sampling.epsilon"):
        SamplingConfig(epsilon=-1.0)


def test_guidance_on_task_without_data_is_refused():
    from lightning_wflow.lit import FlowMatchingModule, VelocityNetConfig

    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", net=VelocityNetConfig(d_model=8, n_layers=1),
                               sampling=SamplingConfig(n_samples=2, steps=2, guidance_scale=0.1))
    with pytest.raises(ValueError, match="guidance"):
        model.sample()
