import pytest
import torch

from lightning_wflow.models import RelationalTransformer
from lightning_wflow.symmetry import apply_permutations, random_permutations
from lightning_wflow.weights import MLPSpec


@pytest.mark.parametrize("edge_scaling", ["none", "fan_in"])
@pytest.mark.parametrize("sizes", [(6, 5, 4, 3), (7, 8, 2)])
def test_velocity_field_is_permutation_equivariant(sizes, edge_scaling):
    torch.manual_seed(0)
    spec = MLPSpec(sizes)
    net = RelationalTransformer(list(sizes), d_model=16, n_layers=2, edge_scaling=edge_scaling).double()
    x = torch.randn(3, spec.n_params, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    perms = random_permutations(spec, 3, generator=torch.Generator().manual_seed(1))
    out = net(x, t)
    out_perm = net(apply_permutations(spec, x, perms), t)
    torch.testing.assert_close(out_perm, apply_permutations(spec, out, perms), atol=1e-5, rtol=0)
    # and it is not trivially invariant: a permutation does change the output layout
    assert not torch.allclose(out_perm, out)


def test_zero_weight_is_still_an_edge():
    torch.manual_seed(0)
    sizes = (4, 3, 2)
    spec = MLPSpec(sizes)
    net = RelationalTransformer(list(sizes), d_model=8, n_layers=1)
    x = torch.randn(1, spec.n_params)
    x[0, 0] = 0.0  # W_0[0, 0] = 0
    y = x.clone()
    y[0, 0] = 1e-3
    # the zero weight gets its own output (an edge exists), which moves when the weight moves
    assert net(x, torch.tensor([0.5])).shape == (1, spec.n_params)
    assert not torch.allclose(net(x, torch.tensor([0.5]))[0, 0], net(y, torch.tensor([0.5]))[0, 0])


def test_wider_architecture_and_refusals():
    net = RelationalTransformer([5, 4, 3], d_model=8, n_layers=1)
    wide = MLPSpec((5, 9, 3))
    assert net(torch.randn(2, wide.n_params), torch.rand(2), (5, 9, 3)).shape == (2, wide.n_params)
    with pytest.raises(ValueError, match="input size 5 and output size 3"):
        net(torch.randn(1, MLPSpec((6, 4, 3)).n_params), torch.rand(1), (6, 4, 3))
    with pytest.raises(ValueError, match="hidden layers"):
        net(torch.randn(1, MLPSpec((5, 4, 4, 3)).n_params), torch.rand(1), (5, 4, 4, 3))


def _scaled_and_plain(cls, sizes, **kwargs):
    """A fan_in-scaled field, the same weights unscaled, the per-coordinate scale, and inputs (float64)."""
    torch.manual_seed(0)
    spec = MLPSpec(sizes)
    scaled = cls(list(sizes), edge_scaling="fan_in", **kwargs).double()
    plain = cls(list(sizes), **kwargs).double()
    plain.load_state_dict(scaled.state_dict())
    s = torch.ones(spec.n_params, dtype=torch.float64)
    for sl in spec.slices:
        s[sl.weight] = sl.n_in ** 0.5
    x, t = torch.randn(2, spec.n_params, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    return scaled, plain, s, x, t


def test_fan_in_edge_scaling_reads_and_writes_weights_at_unit_scale():
    """fan_in scaling == the unscaled network applied to sqrt(fan_in)-scaled weights, its
    weight outputs divided by sqrt(fan_in); biases untouched. Per layer, from sizes only."""
    sizes = (9, 4, 3)
    scaled, plain, s, x, t = _scaled_and_plain(RelationalTransformer, sizes, d_model=8, n_layers=2)
    torch.testing.assert_close(scaled(x, t), plain(x * s, t) / s)
    assert not torch.allclose(scaled(x, t), plain(x, t))
    # a wider net scales with its own fan-ins: 784-32-10's second layer by sqrt(32)
    wide = (9, 7, 3)
    assert scaled(torch.randn(1, MLPSpec(wide).n_params, dtype=torch.float64), t[:1], wide).shape[1] == MLPSpec(wide).n_params
    with pytest.raises(ValueError, match="edge_scaling must be one of"):
        RelationalTransformer(list(sizes), edge_scaling="fanin")


def test_mlp_field_scales_like_the_transformer_and_refuses_other_architectures():
    from lightning_wflow.models import MLPVelocityField

    sizes = (9, 4, 3)
    spec = MLPSpec(sizes)
    scaled, plain, s, x, t = _scaled_and_plain(MLPVelocityField, sizes, d_model=16, n_layers=2)
    out = scaled(x, t, sizes)
    assert out.shape == (2, spec.n_params)
    torch.testing.assert_close(out, plain(x * s, t) / s)
    # time matters, and so does every input coordinate (no structure is dropped)
    assert not torch.allclose(scaled(x, t), scaled(x, 1 - t))
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(scaled(x2, t), out)
    # not equivariant: a hidden permutation does not just permute the output
    perms = random_permutations(spec, 2, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(scaled(apply_permutations(spec, x, perms), t), apply_permutations(spec, out, perms))
    with pytest.raises(ValueError, match=r"reads the flat weights of \[9, 4, 3\] only"):
        scaled(torch.randn(1, MLPSpec((9, 7, 3)).n_params, dtype=torch.float64), t[:1], (9, 7, 3))
    with pytest.raises(ValueError, match="edge_scaling must be one of"):
        MLPVelocityField(list(sizes), edge_scaling="fanin")


def test_net_kind_is_validated_and_builds_the_mlp_field():
    from lightning_wflow.lit import FlowMatchingModule, VelocityNetConfig
    from lightning_wflow.models import MLPVelocityField

    with pytest.raises(ValueError, match=r"model.net.kind must be one of \['relational_transformer', 'mlp'\]"):
        VelocityNetConfig(kind="transformer")
    model = FlowMatchingModule(layer_sizes=[4, 5, 2], task="gaussian",
                               net=VelocityNetConfig(kind="mlp", d_model=16, n_layers=1))
    assert isinstance(model.net, MLPVelocityField)
    assert model.hparams["net"]["kind"] == "mlp"
