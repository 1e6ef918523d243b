"""Vectorized zoo training vs. a plain per-network loop, on the same UCI zoo, in one process.

    python benchmarks/bench_zoo.py --runs 100 --epochs 50

The plain loop is what a user would write: one ``nn.Sequential`` and one ``torch.optim``
optimiser per network, a Python loop over runs and minibatches. Both use the same per-run
initialisation and data order (``RunRandomness``), record the same checkpoints, and must end
at the same weights (the largest difference is printed as a check).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from lightning_wflow.tasks import get_task
from lightning_wflow.zoo import RunRandomness, ZooConfig, make_optimizer, train_trajectories


def plain_loop(cfg: ZooConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``cfg.n_runs`` networks one after the other.

    Returns:
        ``(recorded (R, T, P), final (R, P))``.
    """
    spec = cfg.spec
    data = get_task(cfg.task, seed=cfg.split_seed).data()
    n = data.x_train.shape[0]
    record = set(cfg.schedule(n).recorded_steps)
    recorded, finals = [], []
    for run in range(cfg.n_runs):
        rng = RunRandomness(cfg.seed, [run])
        net = spec.build_sequential()
        init = rng.initial(spec.n_params, cfg.init_mean, cfg.init_std)
        net.load_state_dict({k: v[0] for k, v in spec.to_state_dicts(init).items()})
        opt = make_optimizer(list(net.parameters()), cfg)
        trajectory, step = [], 0
        for _ in range(cfg.epochs):
            perm = rng.permutations(n)[0]
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step in record:
                    trajectory.append(spec.from_sequential(net)[0])
        recorded.append(torch.stack(trajectory))
        finals.append(spec.from_sequential(net)[0])
    return torch.stack(recorded), torch.stack(finals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--burn-in", type=int, default=10)
    parser.add_argument("--record-every", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    cfg = replace(
        ZooConfig(),  # the reference UCI recipe: 30-16-16-2, Adam, prior std sqrt(0.1)
        n_runs=args.runs,
        epochs=args.epochs,
        burn_in_epochs=min(args.burn_in, args.epochs - 1),
        record_every=args.record_every,
        batch_size=args.batch_size,
    ).validate()
    task = get_task(cfg.task)
    task.data()  # load once, outside the timings
    # The first torch.optim optimiser of a process imports torch._dynamo (seconds); pay it here.
    make_optimizer([torch.zeros(1, requires_grad=True)], cfg)
    sched = cfg.schedule(task.data().x_train.shape[0])
    print(
        f"UCI zoo: {cfg.n_runs} runs x {cfg.epochs} epochs x {sched.iters_per_epoch} iterations, "
        f"MLP {list(cfg.layer_sizes)} ({cfg.spec.n_params} parameters), "
        f"{len(sched.recorded_steps)} checkpoints per run, {torch.get_num_threads()} threads"
    )

    t0 = time.perf_counter()
    traj = train_trajectories(cfg, task, range(cfg.n_runs), progress=False)
    t_vec = time.perf_counter() - t0
    print(f"vectorized:   {t_vec:8.2f} s")

    t0 = time.perf_counter()
    recorded, final = plain_loop(cfg)
    t_plain = time.perf_counter() - t0
    print(f"plain loop:   {t_plain:8.2f} s")
    print(f"speed-up:     {t_plain / t_vec:8.1f} x")
    diff = (traj.final - final).abs().max().item()
    print(f"max |final weights difference|: {diff:.2e}; recorded {tuple(recorded.shape)}")


if __name__ == "__main__":
    main()
