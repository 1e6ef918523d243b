"""FlowMatchingModule: a short Gaussian flow really moves mass from N(0, I) to N(1, I)."""

import lightning as L
import pytest
import torch

from lightning_wflow.lit import FlowMatchingModule, SamplingConfig, VelocityNetConfig, WeightZooDataModule


def test_short_gaussian_flow_moves_sample_mean_toward_one(in_tmp):
    L.seed_everything(0)
    dm = WeightZooDataModule(task="gaussian", layer_sizes=[4, 5, 2], n_samples=512, gaussian_mean=1.0,
                             batch_size=32, val_runs=32, progress=False)
    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", net=VelocityNetConfig(d_model=16, n_layers=2),
                               sampling=SamplingConfig(n_samples=64, steps=20))
    before = model.sample().mean().item()
    trainer = L.Trainer(max_steps=600, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, enable_model_summary=False)
    trainer.fit(model, dm)
    samples = model.sample()
    assert abs(before) < 0.3  # an untrained x1-predictor does not land on N(1, I)
    assert abs(samples.mean().item() - 1.0) < 0.25, samples.mean().item()
    # the per-weight spread is of order one, not collapsed onto the mean
    assert 0.3 < samples.std(0).mean().item() < 1.5


def test_sampling_is_reproducible_and_splits_by_indices():
    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", net=VelocityNetConfig(d_model=8, n_layers=1),
                               sampling=SamplingConfig(n_samples=10, steps=4, seed=3))
    full = model.sample()
    torch.testing.assert_close(model.sample(), full)
    part = model.sample(indices=torch.tensor([2, 3, 4]))
    torch.testing.assert_close(part, full[2:5])


def test_ema_weights_are_averaged_and_used_for_sampling(in_tmp):
    L.seed_everything(0)
    dm = WeightZooDataModule(task="gaussian", layer_sizes=[4, 5, 2], n_samples=64, batch_size=16, val_runs=16,
                             progress=False)
    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", net=VelocityNetConfig(d_model=8, n_layers=1),
                               sampling=SamplingConfig(n_samples=4, steps=3), ema_decay=0.5)
    trainer = L.Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, enable_model_summary=False)
    trainer.fit(model, dm)
    assert model.sampling_net() is model.ema.module
    live = torch.cat([p.flatten() for p in model.net.parameters()])
    avg = torch.cat([p.flatten() for p in model.ema.module.parameters()])
    assert not torch.allclose(live, avg)  # an average over steps, not a copy of the last one
    assert int(model.ema.n_averaged) == 5
    assert torch.isfinite(model.sample()).all()


def test_residual_x1_parametrization_defaults_to_identity():
    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", net=VelocityNetConfig(d_model=8, n_layers=1),
                               x1_parametrization="residual")
    for head in (model.net.node_out, model.net.edge_out):
        torch.nn.init.zeros_(head[-1].weight)
        torch.nn.init.zeros_(head[-1].bias)
    x = torch.randn(3, 37)
    t = torch.tensor([0.1, 0.5, 0.99])
    torch.testing.assert_close(model.predict_x1(x, t), x)
    # the direct parametrization outputs the network's value itself (zero here)
    model.x1_parametrization = "direct"
    assert torch.count_nonzero(model.predict_x1(x, t)) == 0
    with pytest.raises(ValueError, match="x1_parametrization"):
        FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", x1_parametrization="velocity")


@pytest.mark.parametrize("coupling", ["ot", "equivariant"])
def test_couplings_train_the_geometric_flow(coupling):
    """Every coupling runs inside the loss and backpropagates (tiny UCI-shaped net, no data)."""
    torch.manual_seed(0)
    model = FlowMatchingModule(layer_sizes=[4, 5, 3, 2], task="gaussian", geometry="geometric", coupling=coupling,
                               net=VelocityNetConfig(d_model=8, n_layers=1, edge_scaling="fan_in"))
    x1 = model.geometry.projx(torch.randn(6, model.spec.n_params))
    loss = model.flow_matching_loss(x1, generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert all(p.grad is not None for p in model.net.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="model.coupling must be one of"):
        FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", coupling="sinkhorn")


def test_checkpoint_from_before_a_net_option_existed_still_loads():
    from dataclasses import asdict

    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian", net=VelocityNetConfig(d_model=8, n_layers=1))
    old = {k: v for k, v in asdict(model.net_config).items() if k != "edge_scaling"}
    model.on_load_checkpoint({"hyper_parameters": {"net": old}})  # default edge_scaling: same behaviour
    with pytest.raises(ValueError, match="edge_scaling"):
        model.on_load_checkpoint({"hyper_parameters": {"net": {**old, "edge_scaling": "fan_in"}}})


def test_short_gaussian_flow_with_mlp_field_moves_sample_mean_toward_one(in_tmp):
    L.seed_everything(0)
    dm = WeightZooDataModule(task="gaussian", layer_sizes=[4, 5, 2], n_samples=512, gaussian_mean=1.0,
                             batch_size=32, val_runs=32, progress=False)
    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian",
                               net=VelocityNetConfig(kind="mlp", d_model=64, n_layers=2),
                               sampling=SamplingConfig(n_samples=64, steps=20))
    trainer = L.Trainer(max_steps=400, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, enable_model_summary=False)
    trainer.fit(model, dm)
    samples = model.sample()
    assert abs(samples.mean().item() - 1.0) < 0.25, samples.mean().item()
    assert 0.3 < samples.std(0).mean().item() < 1.5
