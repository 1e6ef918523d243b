"""Flow matching machinery: time samplers, priors, couplings, paths, solvers, guidance, likelihoods."""

from .couplings import COUPLINGS, Coupling, EquivariantCoupling, IndependentCoupling, OTCoupling, make_coupling
from .guidance import LossGuidance
from .likelihood import LikelihoodResult, divergence, log_likelihood
from .paths import PathSample, sample_path, x1_prediction_velocity
from .priors import GaussianPrior, Prior, SpherePrior
from .solvers import NOISE_SCALINGS, SOLVERS, NoiseConfig, Trajectory, integrate, integrate_trajectory, make_time_grid, rk_step
from .time import BetaTimeSampler, TimeSampler, UniformTimeSampler

__all__ = [
    "COUPLINGS",
    "EquivariantCoupling",
    "NOISE_SCALINGS",
    "SOLVERS",
    "BetaTimeSampler",
    "Coupling",
    "GaussianPrior",
    "IndependentCoupling",
    "LikelihoodResult",
    "LossGuidance",
    "NoiseConfig",
    "OTCoupling",
    "PathSample",
    "Prior",
    "SpherePrior",
    "TimeSampler",
    "Trajectory",
    "UniformTimeSampler",
    "divergence",
    "integrate",
    "integrate_trajectory",
    "log_likelihood",
    "make_coupling",
    "make_time_grid",
    "rk_step",
    "sample_path",
    "x1_prediction_velocity",
]
