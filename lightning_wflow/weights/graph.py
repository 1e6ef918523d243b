"""The graph view of an MLP: neurons are nodes (carrying their bias), weights are edges.

Every index here is computed from the layer sizes alone, never from weight values: a
weight that happens to be zero is still an edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .mlp import MLPSpec

__all__ = ["MLPGraph"]


@dataclass(frozen=True)
class MLPGraph:
    """Index tensors of the computational graph of an MLP.

    Nodes are numbered layer by layer: the ``d_0`` input neurons first, then the neurons
    of layer 1, ..., the ``d_L`` output neurons last. Edge ``e`` goes from neuron ``j``
    of layer ``k`` (``src``) to neuron ``i`` of layer ``k + 1`` (``dst``) and carries
    ``W_k[i, j]``.

    Attributes:
        n_nodes: ``N = sum(layer_sizes)``.
        node_layer: ``(N,)`` layer index of each node (0 = input).
        node_pos: ``(N,)`` index of the node's positional embedding: one per input
            neuron, one per output neuron, one shared by all neurons of a hidden layer.
        n_pos: number of distinct positional embeddings.
        bias_nodes: ``(N - d_0,)`` node ids that carry a bias, in flat order.
        bias_param: ``(N - d_0,)`` flat index of the bias of each of ``bias_nodes``.
        edge_index: ``(2, E)`` ``(src, dst)`` node ids, edges in flat order.
        edge_layer: ``(E,)`` Linear layer index ``k`` of each edge.
        edge_param: ``(E,)`` flat index of each edge's weight.
    """

    spec: MLPSpec
    n_nodes: int
    node_layer: Tensor
    node_pos: Tensor
    n_pos: int
    bias_nodes: Tensor
    bias_param: Tensor
    edge_index: Tensor
    edge_layer: Tensor
    edge_param: Tensor

    @classmethod
    def from_spec(cls, spec: MLPSpec) -> "MLPGraph":
        sizes = spec.layer_sizes
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        n_nodes = offsets[-1]
        node_layer = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))

        # positional ids: inputs 0..d0-1, then one per hidden layer, then outputs
        pos_parts = [torch.arange(sizes[0])]
        nxt = sizes[0]
        for h in spec.hidden_sizes:
            pos_parts.append(torch.full((h,), nxt))
            nxt += 1
        pos_parts.append(torch.arange(nxt, nxt + sizes[-1]))
        node_pos = torch.cat(pos_parts)
        n_pos = nxt + sizes[-1]

        srcs, dsts, layers, eparams, bnodes, bparams = [], [], [], [], [], []
        for k, sl in enumerate(spec.slices):
            i = torch.arange(sl.n_out).repeat_interleave(sl.n_in)  # row-major (out, in)
            j = torch.arange(sl.n_in).repeat(sl.n_out)
            srcs.append(offsets[k] + j)
            dsts.append(offsets[k + 1] + i)
            layers.append(torch.full((sl.n_out * sl.n_in,), k))
            eparams.append(torch.arange(sl.weight.start, sl.weight.stop))
            bnodes.append(offsets[k + 1] + torch.arange(sl.n_out))
            bparams.append(torch.arange(sl.bias.start, sl.bias.stop))
        return cls(
            spec=spec,
            n_nodes=n_nodes,
            node_layer=node_layer,
            node_pos=node_pos,
            n_pos=n_pos,
            bias_nodes=torch.cat(bnodes),
            bias_param=torch.cat(bparams),
            edge_index=torch.stack([torch.cat(srcs), torch.cat(dsts)]),
            edge_layer=torch.cat(layers),
            edge_param=torch.cat(eparams),
        )

    @property
    def n_edges(self) -> int:
        return int(self.edge_param.numel())

    def node_values(self, flat: Tensor) -> Tensor:
        """``(B, P)`` -> ``(B, N)`` bias per node (0 for input neurons)."""
        out = flat.new_zeros(flat.shape[0], self.n_nodes)
        out[:, self.bias_nodes.to(flat.device)] = flat[:, self.bias_param.to(flat.device)]
        return out

    def edge_values(self, flat: Tensor) -> Tensor:
        """``(B, P)`` -> ``(B, E)`` weight per edge."""
        return flat[:, self.edge_param.to(flat.device)]

    def to_flat(self, node_out: Tensor, edge_out: Tensor) -> Tensor:
        """``(B, N)`` node values and ``(B, E)`` edge values -> ``(B, P)`` (input nodes dropped)."""
        flat = edge_out.new_empty(edge_out.shape[0], self.spec.n_params)
        flat[:, self.edge_param.to(flat.device)] = edge_out
        flat[:, self.bias_param.to(flat.device)] = node_out[:, self.bias_nodes.to(flat.device)]
        return flat
