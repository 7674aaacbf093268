"""2-D Kolmogorov flow (Re = 1000, forcing wavenumber 4), 128^2 -> 64^2.

Vorticity on a 64 x 64 periodic grid, one model step = 0.25 time units. The
ARDM and controller architectures are the 2-D versions of the KS ones; no
checkpoints are shipped for this system yet (training them on 2 CPU cores
takes hours: run `gencast-control train --config kolmogorov` on a GPU).
"""

from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.ardm_training import ARDMTrainingConfig
from gencast_control.controller import ControllerConfig
from gencast_control.controller_training import ControllerTrainingConfig
from gencast_control.experiment import (AssimilationConfig, DataConfig,
                                        ExperimentConfig)
from gencast_control.networks import ConvNetConfig
from gencast_control.pdes.kolmogorov import KolmogorovConfig
from gencast_control.regimes import ObservationRegime
from gencast_control.samplers import SamplerConfig

NOISE = 0.5  # vorticity std on the 64^2 grid is about 4.5

REGIMES = (
    ObservationRegime("random_25pct", fraction=0.25, noise_std=NOISE),
    ObservationRegime("random_10pct", fraction=0.10, noise_std=NOISE),
    ObservationRegime("random_5pct", fraction=0.05, noise_std=NOISE),
    ObservationRegime("random_1pct", fraction=0.01, noise_std=NOISE),
    ObservationRegime("stations_5pct", fraction=0.05, layout="regular",
                      fixed=True, noise_std=NOISE),
    ObservationRegime("every4_10pct", fraction=0.10, every=4,
                      noise_std=NOISE),
)


def get_config() -> ExperimentConfig:
  return ExperimentConfig(
      name="kolmogorov",
      system="kolmogorov",
      pde=KolmogorovConfig(resolution=128, output_resolution=64,
                           reynolds=1000.0, forcing_wavenumber=4, drag=0.1,
                           solver_dt=1 / 256, model_dt=0.25),
      data=DataConfig(num_train=64, num_validation=8, num_test=8,
                      num_steps=100, burn_in_steps=160, seed=0),
      ardm=GridARDMConfig(
          state_shape=(64, 64, 1), periodic=(True, True), history_length=1,
          network=ConvNetConfig(width=48, num_blocks=6, kernel_size=3,
                                dilations=(1, 2, 4, 8), embedding_size=64),
          sampler=SamplerConfig(method="dpmpp_2s", num_steps=6,
                                sigma_max=10.0, sigma_min=0.02, rho=7.0)),
      ardm_training=ARDMTrainingConfig(num_steps=20000, batch_size=32,
                                       learning_rate=1e-3),
      controller=ControllerConfig(horizon=2),
      controller_training=ControllerTrainingConfig(
          window=4, spinup=8, batch_size=8, num_steps=2000,
          learning_rate=1e-3, control_cost=1e-2),
      regimes=REGIMES,
      train_regimes=tuple(r.name for r in REGIMES),
      assimilation=AssimilationConfig(regime="random_5pct", num_steps=60,
                                      ensemble_size=8, num_trajectories=4),
  )
