"""Speed and memory of the relational transformer velocity field.

Times one training step (forward + backward + Adam) and one sampling step (forward under
no_grad) on the 30-16-16-2 and 784-10-10 graphs, and the peak memory of the training step
(CUDA peak allocator stats on a GPU; on the CPU the activation memory that autograd saves
for the backward pass, the part that grows with the batch and the graph).

The public reference implementation (dense N x N edge tensors) on this 2-core machine, as
stated in the foundation issue: 1.1 s / 1.8 GB per training step on 30-16-16-2 at batch 16,
4.5 s per sampling step of 100 networks, 38 s / 8.4 GB per training step on 784-10-10 at
batch 1 (batch 8 does not fit in 24 GB). Ratios against those figures are printed, and
against an in-process baseline: ``DenseRT`` below, the same relational transformer built
the way the reference builds it, with a dense ``(B, N, N, d)`` edge tensor (non-edges
masked) and attention over all node pairs. The dense 784-10-10 baseline needs several GB
and tens of seconds per step; it runs only with ``--dense-large``.

A second table times the MLP velocity field of ``configs/mnist_geometric_mlp.yaml``
(``model.net.kind: mlp``, width 512, 3 residual blocks) against the relational transformer
at the same batch, in the same process.

Usage: python benchmarks/bench_velocity.py [--repeats 5] [--device cpu] [--threads 1] [--dense-large]
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_wflow.models import MLPVelocityField, RelationalTransformer
from lightning_wflow.weights import MLPSpec

REFERENCE = {  # seconds, from the issue (public code, 2-core machine)
    ("train", (30, 16, 16, 2), 16): 1.1,
    ("sample", (30, 16, 16, 2), 100): 4.5,
    ("train", (784, 10, 10), 1): 38.0,
}


class DenseRT(torch.nn.Module):
    """Baseline: relational transformer over a dense (B, N, N, d) edge tensor."""

    def __init__(self, sizes, d_model=32, n_layers=5):
        super().__init__()
        from lightning_wflow.weights import MLPGraph

        self.g = MLPGraph.from_spec(MLPSpec(sizes))
        d = d_model
        mlp = lambda i, o: torch.nn.Sequential(torch.nn.Linear(i, d), torch.nn.GELU(), torch.nn.Linear(d, o))
        self.node_in, self.edge_in = mlp(2, d), mlp(2, d)
        self.node_out, self.edge_out = mlp(d, 1), mlp(d, 1)
        self.pos = torch.nn.Embedding(self.g.n_pos, d)
        L = torch.nn.ModuleList
        self.qkv_n = L(torch.nn.Linear(d, 3 * d) for _ in range(n_layers))
        self.qkv_e = L(torch.nn.Linear(d, 3 * d, bias=False) for _ in range(n_layers))
        self.o = L(torch.nn.Linear(d, d) for _ in range(n_layers))
        self.ffn = L(mlp(d, d) for _ in range(n_layers))
        self.e_upd = L(torch.nn.Linear(3 * d, d) for _ in range(n_layers))
        self.norms = L(torch.nn.LayerNorm(d) for _ in range(3 * n_layers))

    def forward(self, x, t):
        g, B, N = self.g, x.shape[0], self.g.n_nodes
        src, dst = g.edge_index
        tt = t[:, None, None]
        n = self.node_in(torch.stack([g.node_values(x), tt[:, :, 0].expand(B, N)], -1)) + self.pos(g.node_pos)
        dense = x.new_zeros(B, N, N)
        dense[:, dst, src] = g.edge_values(x)
        mask = torch.zeros(N, N, dtype=torch.bool)
        mask[dst, src] = True
        mask = mask | mask.T
        e = self.edge_in(torch.stack([dense, tt.expand(B, N, N)], -1))
        for k in range(len(self.o)):
            qn, kn, vn = self.qkv_n[k](n).chunk(3, -1)
            qe, ke, ve = self.qkv_e[k](e).chunk(3, -1)
            q, kk, v = qn[:, :, None] + qe, kn[:, None] + ke, vn[:, None] + ve
            s = (q * kk).sum(-1).masked_fill(~mask, float("-inf")) / q.shape[-1] ** 0.5
            a = torch.nan_to_num(s.softmax(-1))
            n = self.norms[3 * k](n + self.o[k]((a[..., None] * v).sum(2)))
            n = self.norms[3 * k + 1](n + self.ffn[k](n))
            cat = torch.cat([e, n[:, :, None].expand(B, N, N, -1), n[:, None].expand(B, N, N, -1)], -1)
            e = self.norms[3 * k + 2](e + self.e_upd[k](cat))
        out_e = self.edge_out(e)[..., 0][:, dst, src]
        return g.to_flat(self.node_out(n)[..., 0], out_e)


def saved_activations_mb(net, x, t) -> float:
    """MB of distinct tensor storages autograd saves for the backward of one forward."""
    seen: set[int] = set()
    total = 0

    def pack(tensor):
        nonlocal total
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        net(x, t)
    return total / 2**20


def time_step(sizes, batch, mode, repeats, device, dense=False, d_model=32, n_layers=5,
              mlp=False) -> tuple[float, float]:
    torch.manual_seed(0)
    spec = MLPSpec(sizes)
    if mlp:
        net = MLPVelocityField(list(sizes), d_model=512, n_layers=3, edge_scaling="fan_in").to(device)
    else:
        cls = DenseRT if dense else RelationalTransformer
        net = cls(list(sizes), d_model=d_model, n_layers=n_layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(batch, spec.n_params, device=device)
    t = torch.rand(batch, device=device)

    def step():
        if mode == "train":
            loss = (net(x, t) - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem = saved_activations_mb(net, x, t) if mode == "train" else 0.0
    return sorted(times)[len(times) // 2], mem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dense-large", action="store_true", help="also run the dense baseline on 784-10-10")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    rows = [
        ("train", (30, 16, 16, 2), 16),
        ("sample", (30, 16, 16, 2), 16),
        ("sample", (30, 16, 16, 2), 100),
        ("train", (784, 10, 10), 1),
        ("train", (784, 10, 10), 8),
        ("sample", (784, 10, 10), 8),
    ]
    print(f"{'step':7s} {'graph':14s} {'batch':>5s} {'median s':>9s} {'act. MB':>8s} "
          f"{'dense s':>9s} {'vs dense':>9s} {'vs issue ref':>12s}")
    for mode, sizes, batch in rows:
        sec, mem = time_step(sizes, batch, mode, args.repeats, device)
        run_dense = sizes[0] < 100 or (args.dense_large and batch == 1)
        dsec = time_step(sizes, batch, mode, max(1, args.repeats // 2), device, dense=True)[0] if run_dense else None
        ref = REFERENCE.get((mode, sizes, batch))
        vs_dense = f"{dsec / sec:8.1f}x" if dsec else "        -"
        dcol = f"{dsec:9.4f}" if dsec else "        -"
        vs_ref = f"{ref / sec:11.1f}x" if ref else "           -"
        print(f"{mode:7s} {'-'.join(map(str, sizes)):14s} {batch:5d} {sec:9.4f} {mem:8.0f} {dcol} {vs_dense} {vs_ref}")

    print("\nMLP velocity field (width 512, 3 blocks, 9.8M parameters) vs the relational transformer (d 32, 5 layers)")
    print(f"{'step':7s} {'graph':14s} {'batch':>5s} {'MLP s':>9s} {'RT s':>9s} {'RT / MLP':>9s}")
    for mode, sizes, batch in [("train", (784, 10, 10), 8), ("train", (784, 10, 10), 32), ("sample", (784, 10, 10), 100)]:
        sec = time_step(sizes, batch, mode, args.repeats, device, mlp=True)[0]
        rsec = time_step(sizes, batch, mode, max(1, args.repeats // 2), device)[0]
        print(f"{mode:7s} {'-'.join(map(str, sizes)):14s} {batch:5d} {sec:9.4f} {rsec:9.4f} {rsec / sec:8.1f}x")


if __name__ == "__main__":
    main()
