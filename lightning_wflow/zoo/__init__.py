"""Training many base networks at once, recording trajectories, and the on-disk zoo store."""

from .build import BuildInfo, Zoo, build_zoo, load_zoo, zoo_path
from .config import OPTIMIZERS, ZOO_FORMAT, Schedule, ZooConfig
from .gaussian import sample_gaussian_zoo
from .store import ZooCacheError, ZooCacheWarning
from .trainer import RunRandomness, Trajectories, make_optimizer, run_seed, train_trajectories

__all__ = [
    "OPTIMIZERS",
    "ZOO_FORMAT",
    "BuildInfo",
    "RunRandomness",
    "Schedule",
    "Trajectories",
    "Zoo",
    "ZooCacheError",
    "ZooCacheWarning",
    "ZooConfig",
    "build_zoo",
    "load_zoo",
    "make_optimizer",
    "run_seed",
    "sample_gaussian_zoo",
    "train_trajectories",
    "zoo_path",
]
