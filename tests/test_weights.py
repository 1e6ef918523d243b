import pytest
import torch
from torch import nn

from lightning_wflow.weights import MLPGraph, MLPSpec, load_samples, load_sequentials, save_samples

SIZES = [(30, 16, 16, 2), (5, 7, 3), (4, 6, 5, 3, 2)]


@pytest.mark.parametrize("sizes", SIZES)
def test_flat_layers_state_dict_round_trip(sizes):
    spec = MLPSpec(sizes)
    flat = torch.randn(4, spec.n_params, dtype=torch.float64)
    assert torch.equal(spec.flatten(spec.unflatten(flat)), flat)
    assert torch.equal(spec.from_state_dicts(spec.to_state_dicts(flat)), flat)
    net = spec.build_sequential().double()
    assert spec.n_params == sum(p.numel() for p in net.parameters())
    assert torch.equal(spec.from_sequential(net), torch.cat([p.flatten() for p in net.parameters()])[None])


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_batched_forward_matches_sequential(sizes, activation):
    spec = MLPSpec(sizes, activation)
    flat = torch.randn(5, spec.n_params, dtype=torch.float64)
    x = torch.randn(11, sizes[0], dtype=torch.float64)
    out = spec.forward(flat, x)
    nets = spec.to_sequentials(flat)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net.double()(x))
    # one input batch per network
    xb = torch.randn(5, 3, sizes[0], dtype=torch.float64)
    torch.testing.assert_close(spec.forward(flat, xb)[2], nets[2](xb[2]))


def test_bad_layer_sizes_and_shapes():
    with pytest.raises(ValueError, match="at least two sizes"):
        MLPSpec((3,))
    with pytest.raises(ValueError, match="positive integers"):
        MLPSpec((3, 0, 2))
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPSpec((3, 2), "swish")
    with pytest.raises(ValueError, match=r"\(B, 11\)"):
        MLPSpec((3, 2, 1)).unflatten(torch.zeros(2, 10))


def test_graph_indices_from_sizes_not_values():
    spec = MLPSpec((3, 4, 2))
    g = MLPGraph.from_spec(spec)
    assert g.n_nodes == 9 and g.n_edges == 3 * 4 + 4 * 2
    flat = torch.zeros(1, spec.n_params)  # all weights zero: still every edge
    assert g.edge_values(flat).shape == (1, 20)
    flat = torch.randn(2, spec.n_params)
    (w0, b0), (w1, b1) = spec.unflatten(flat)
    # edge e carries W_k[dst, src]
    src, dst = g.edge_index
    e = g.edge_values(flat)
    k0 = g.edge_layer == 0
    torch.testing.assert_close(e[:, k0], w0[:, dst[k0] - 3, src[k0]])
    k1 = g.edge_layer == 1
    torch.testing.assert_close(e[:, k1], w1[:, dst[k1] - 7, src[k1] - 3])
    nodes = g.node_values(flat)
    assert torch.equal(nodes[:, :3], torch.zeros(2, 3))
    torch.testing.assert_close(nodes[:, 3:7], b0)
    torch.testing.assert_close(g.to_flat(nodes, e), flat)
    assert g.node_layer.tolist() == [0] * 3 + [1] * 4 + [2] * 2
    # one positional id per input, one shared per hidden layer, one per output
    assert g.node_pos.tolist() == [0, 1, 2, 3, 3, 3, 3, 4, 5]


def test_large_graph_has_only_real_edges():
    g = MLPGraph.from_spec(MLPSpec((784, 10, 10)))
    # 784*10 + 10*10 weights (the issue text rounds this to 7,950); 7,960 parameters with biases
    assert g.n_edges == 7940 and g.n_nodes == 804 and g.spec.n_params == 7960


def test_sample_file_round_trip(tmp_path):
    spec = MLPSpec((5, 4, 3))
    flat = torch.randn(6, spec.n_params)
    path = save_samples(tmp_path / "s.safetensors", spec, flat, {"task": "x", "geometry": "euclidean"})
    f = load_samples(path)
    assert f.spec == spec and f.metadata["task"] == "x" and f.metadata["n_samples"] == 6
    torch.testing.assert_close(f.flat, flat)
    nets = load_sequentials(path)
    assert len(nets) == 6 and isinstance(nets[0], nn.Sequential)
    x = torch.randn(7, 5)
    torch.testing.assert_close(nets[3](x), spec.forward(flat, x)[3])
    assert list(f.state_dicts()[0]) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_sample_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_samples(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a sample file"):
        load_samples(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"a": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a sample file"):
        load_samples(other)
    spec = MLPSpec((2, 2))
    bad = torch.full((1, spec.n_params), float("nan"))
    with pytest.raises(FloatingPointError):
        save_samples(tmp_path / "nan.safetensors", spec, bad)
    assert not (tmp_path / "nan.safetensors").exists()
