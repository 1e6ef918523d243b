"""Relational transformer with edge updates over the graph of an MLP.

Diao & Loynd (2023), as adapted to weight space by Kofinas et al. (2024); reference
Sections 5.1.2 and 6.3. Nodes are neurons (feature: bias, 0 for input neurons), edges are
weights (feature: the weight). Attention runs over graph neighbours in both directions, so
every tensor is ``(B, E, d)`` or ``(B, N, d)``: memory grows with the number of parameters,
never with ``N^2`` (the public reference's dense ``(B, N, N, d)`` edge tensor holds 646k
slots for the 7,950 weights of a 784-10-10 MLP).

Permutation equivariance: hidden neurons of one layer share a positional embedding and are
only ever combined through gathers, per-receiver softmaxes and scatter-sums over the
graph's edges, so permuting hidden neurons permutes the output the same way.

Written by hand rather than with a torch_geometric conv: the RT's queries, keys and values
mix node and edge features per edge in both edge directions and the edges themselves are
updated, which no torch_geometric layer does; its segment softmax is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.utils import softmax as segment_softmax

from ..weights import MLPGraph, MLPSpec

__all__ = ["EDGE_SCALINGS", "RelationalTransformer", "RTLayer", "time_features"]

#: how weights are scaled on their way into and out of the network (see RelationalTransformer)
EDGE_SCALINGS = ("none", "fan_in")


def time_features(t: Tensor, n_freq: int) -> Tensor:
    """``(B,)`` -> ``(B, 1 + 2 n_freq)``: ``[t, sin(2^k pi t), cos(2^k pi t)]``."""
    freqs = math.pi * 2.0 ** torch.arange(n_freq, device=t.device, dtype=t.dtype)
    ang = t[:, None] * freqs
    return torch.cat([t[:, None], ang.sin(), ang.cos()], dim=-1)


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class RTLayer(nn.Module):
    """One node update (relational attention) and one edge update.

    Node update: for a receiver ``i`` and sender ``j`` joined by edge ``e_ij`` (either
    direction),
    ``q = n_i W^Q_N + e W^Q_E``, ``k = n_j W^K_N + e W^K_E``, ``v = n_j W^V_N + e W^V_E``
    (reference eq. 5.6), softmax over the senders of ``i``, then residual + LayerNorm and a
    feed-forward block. Edge update: ``e <- LN(e + MLP(e W_e + n_src W_s + n_dst W_d))``
    (reference eq. 5.2).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, ffn_mult: int = 2):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d, self.h = d_model, n_heads
        self.node_qkv = nn.Linear(d_model, 3 * d_model)
        # one edge projection serves messages along and against the edge: the receiver's
        # query (its layer's positional embedding) tells the directions apart, and sharing
        # halves the per-edge matmul, which dominates the cost
        self.edge_qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = _mlp(d_model, ffn_mult * d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.edge_e = nn.Linear(d_model, d_model)
        self.edge_s = nn.Linear(d_model, d_model, bias=False)
        self.edge_d = nn.Linear(d_model, d_model, bias=False)
        self.edge_mlp = nn.Sequential(nn.GELU(), nn.Linear(d_model, d_model))
        self.norm_e = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, n: Tensor, e: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        """Args: ``n (B, N, d)``, ``e (B, E, d)``, ``src, dst (E,)``. Returns new ``(n, e)``."""
        B, N, d = n.shape
        qn, kn, vn = self.node_qkv(n).chunk(3, dim=-1)
        qe, ke, ve = self.edge_qkv(e).chunk(3, dim=-1)
        dh = d // self.h

        def heads(x: Tensor) -> Tensor:
            return x.unflatten(-1, (self.h, dh))

        def gather(x: Tensor, idx: Tensor) -> Tensor:
            # index_select: its backward is an index_add, much cheaper than index_put
            return x.index_select(1, idx)

        # forward messages (receiver dst, sender src) and backward ones (receiver src, sender dst)
        s_f = (heads(gather(qn, dst) + qe) * heads(gather(kn, src) + ke)).sum(-1)
        s_b = (heads(gather(qn, src) + qe) * heads(gather(kn, dst) + ke)).sum(-1)
        recv = torch.cat([dst, src])
        score = torch.cat([s_f, s_b], dim=1) / math.sqrt(dh)  # (B, 2E, h)
        alpha = self.drop(segment_softmax(score, recv, num_nodes=N, dim=1)).unsqueeze(-1)
        a_f, a_b = alpha.chunk(2, dim=1)
        msg = n.new_zeros(B, N, self.h, dh)
        msg.index_add_(1, dst, a_f * heads(gather(vn, src) + ve))
        msg.index_add_(1, src, a_b * heads(gather(vn, dst) + ve))
        n = self.norm1(n + self.drop(self.out(msg.flatten(2))))
        n = self.norm2(n + self.drop(self.ffn(n)))
        upd = self.edge_e(e) + gather(self.edge_s(n), src) + gather(self.edge_d(n), dst)
        e = self.norm_e(e + self.drop(self.edge_mlp(upd)))
        return n, e


@dataclass(frozen=True)
class _GraphBuffers:
    src: Tensor
    dst: Tensor
    node_pos: Tensor
    edge_layer: Tensor
    edge_scale: Tensor
    graph: MLPGraph


class RelationalTransformer(nn.Module):
    """Velocity field (x1-prediction) over the weights of MLPs: ``(x_t, t) -> x1_hat``.

    Args:
        layer_sizes: the MLP the flow is trained on, e.g. ``[30, 16, 16, 2]``. It fixes the
            positional embeddings: one per input neuron, one shared by each hidden layer,
            one per output neuron, and one per Linear layer for the edges. Any MLP with the
            same input size, output size and number of hidden layers (any hidden widths) can
            be passed at ``forward`` time.
        d_model: feature width ``d_E``.
        n_layers: number of node + edge update layers.
        n_heads: attention heads.
        n_time_freq: Fourier frequencies of the time features appended to every node and
            edge feature.
        dropout: dropout in attention and feed-forward blocks.
        edge_scaling: ``none`` (weights enter and leave the network as they are, the
            reference's choice) or ``fan_in``: a weight of a Linear layer with ``fan_in``
            inputs enters multiplied by ``sqrt(fan_in)`` and the predicted weight leaves
            divided by it. Canonical weights (each neuron's incoming weights on the unit
            sphere, the last layer on the sphere of radius ``sqrt(C)``) have per-coordinate
            RMS exactly ``1 / sqrt(fan_in)``, so every edge feature is O(1) instead of 0.036
            for MNIST's first layer, whose 7,840 weights would otherwise be read and written
            at a scale 30x below the biases'. The scale comes from the layer sizes only, so
            equivariance and wider architectures are unaffected.
    """

    def __init__(
        self,
        layer_sizes: list[int],
        d_model: int = 32,
        n_layers: int = 5,
        n_heads: int = 1,
        n_time_freq: int = 4,
        dropout: float = 0.0,
        edge_scaling: str = "none",
    ):
        super().__init__()
        self.spec = MLPSpec(tuple(layer_sizes))
        if edge_scaling not in EDGE_SCALINGS:
            raise ValueError(f"edge_scaling must be one of {list(EDGE_SCALINGS)}, got {edge_scaling!r}")
        self.edge_scaling = edge_scaling
        if d_model < 1 or n_layers < 1 or n_heads < 1:
            raise ValueError(
                f"d_model, n_layers and n_heads must be >= 1, got {d_model}, {n_layers}, {n_heads}"
            )
        self.n_time_freq = n_time_freq
        d_in = 2 + 2 * n_time_freq  # value + [t, sin, cos]
        graph = MLPGraph.from_spec(self.spec)
        self.node_in = _mlp(d_in, d_model, d_model)
        self.edge_in = _mlp(d_in, d_model, d_model)
        self.node_pos = nn.Embedding(graph.n_pos, d_model)
        self.edge_pos = nn.Embedding(self.spec.n_layers, d_model)
        self.layers = nn.ModuleList(RTLayer(d_model, n_heads, dropout) for _ in range(n_layers))
        self.node_out = _mlp(d_model, d_model, 1)
        self.edge_out = _mlp(d_model, d_model, 1)
        self._graphs: dict[tuple[int, ...], _GraphBuffers] = {}

    def accepts(self, layer_sizes: tuple[int, ...]) -> tuple[bool, str]:
        """Whether ``forward`` can run on an MLP with these layer sizes, and why not."""
        ref = self.spec.layer_sizes
        if len(layer_sizes) != len(ref):
            return False, f"needs {len(ref) - 2} hidden layers like {list(ref)}, got {list(layer_sizes)}"
        if layer_sizes[0] != ref[0] or layer_sizes[-1] != ref[-1]:
            return False, (
                f"needs input size {ref[0]} and output size {ref[-1]} like {list(ref)} "
                f"(one positional embedding per input/output neuron), got {list(layer_sizes)}"
            )
        return True, ""

    def _graph_buffers(self, layer_sizes: tuple[int, ...], device: torch.device) -> _GraphBuffers:
        key = tuple(layer_sizes)
        buf = self._graphs.get(key)
        if buf is None or buf.src.device != device:
            ok, why = self.accepts(key)
            if not ok:
                raise ValueError(f"the velocity field cannot process layer sizes {list(key)}: {why}")
            # cached index tensors must not be inference tensors (a later autograd use fails)
            with torch.inference_mode(False):
                g = MLPGraph.from_spec(MLPSpec(key))
                fan_in = torch.tensor(key[:-1], dtype=torch.float32)[g.edge_layer]
                # a wider net has more hidden neurons but the same positional ids per layer
                buf = _GraphBuffers(
                    src=g.edge_index[0].to(device),
                    dst=g.edge_index[1].to(device),
                    node_pos=g.node_pos.to(device),
                    edge_layer=g.edge_layer.to(device),
                    edge_scale=(fan_in.sqrt() if self.edge_scaling == "fan_in" else torch.ones_like(fan_in)).to(device),
                    graph=g,
                )
            self._graphs[key] = buf
        return buf

    def forward(self, x: Tensor, t: Tensor, layer_sizes: tuple[int, ...] | None = None) -> Tensor:
        """Predict ``x1`` from ``x_t``.

        Args:
            x: ``(B, P)`` flat weights ``x_t``.
            t: ``(B,)`` or scalar time in ``[0, 1]``.
            layer_sizes: architecture of ``x``; the training one when ``None``.

        Returns:
            ``(B, P)`` predicted ``x1`` in the same flat layout.
        """
        buf = self._graph_buffers(tuple(layer_sizes or self.spec.layer_sizes), x.device)
        g = buf.graph
        g.spec.check_flat(x)
        B = x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(B)
        tf = time_features(t, self.n_time_freq)  # (B, F)
        node_v = g.node_values(x)  # (B, N)
        edge_v = g.edge_values(x) * buf.edge_scale.to(x.dtype)  # (B, E)
        n = self.node_in(
            torch.cat([node_v.unsqueeze(-1), tf[:, None].expand(B, g.n_nodes, -1)], dim=-1)
        ) + self.node_pos(buf.node_pos)
        e = self.edge_in(
            torch.cat([edge_v.unsqueeze(-1), tf[:, None].expand(B, g.n_edges, -1)], dim=-1)
        ) + self.edge_pos(buf.edge_layer)
        for layer in self.layers:
            n, e = layer(n, e, buf.src, buf.dst)
        edge_pred = self.edge_out(e).squeeze(-1) / buf.edge_scale.to(x.dtype)
        return g.to_flat(self.node_out(n).squeeze(-1), edge_pred)
