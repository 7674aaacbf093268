"""2-D Kolmogorov flow (Re = 1000, forcing wavenumber 4), 128^2 -> 64^2.

Vorticity on a 64 x 64 periodic grid, one model step = 0.25 time units. Sized
to train on a 2-core CPU: 12 training trajectories of 128 steps after a burn-in
of 120 steps (30 time units, 6 drag times); an ARDM with a 3-block dilated
conv net (width 24, receptive radius 11 cells, 38,785 parameters) and a
4-sub-step DPM-Solver++(2S) sampler; a 2-block controller (width 16, 14,993
parameters) previewing H = 2 frames, trained on windows of 2 steps after up to
2 unguided spin-up steps, scored on 30% held-out observations (without the
holdout, 150 steps fit the observation noise and assimilate worse). The shipped
checkpoints (gencast_control/checkpoints/kolmogorov_*.npz) were trained with
exactly this config on a 2-core CPU shared with other jobs (load ~10):
simulate 16 min, train-ardm 18 min, train-controller 5 min wall-clock.
Scale `data`, `ardm` and the training sections up on a GPU.
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
      data=DataConfig(num_train=12, num_validation=2, num_test=2,
                      num_steps=128, burn_in_steps=120, seed=0),
      ardm=GridARDMConfig(
          state_shape=(64, 64, 1), periodic=(True, True), history_length=1,
          network=ConvNetConfig(width=24, num_blocks=3, kernel_size=3,
                                dilations=(1, 2, 4), embedding_size=32),
          sampler=SamplerConfig(method="dpmpp_2s", num_steps=4,
                                sigma_max=10.0, sigma_min=0.02, rho=7.0)),
      ardm_training=ARDMTrainingConfig(num_steps=1600, batch_size=8,
                                       learning_rate=2e-3,
                                       checkpoint_every=100),
      controller=ControllerConfig(horizon=2, network=ConvNetConfig(
          width=16, num_blocks=2, kernel_size=3, dilations=(1, 4),
          embedding_size=32)),
      controller_training=ControllerTrainingConfig(
          window=2, spinup=2, holdout_fraction=0.3, batch_size=2,
          num_steps=100, learning_rate=3e-3, control_cost=1e-2,
          checkpoint_every=5, log_every=1),
      regimes=REGIMES,
      train_regimes=tuple(r.name for r in REGIMES),
      assimilation=AssimilationConfig(regime="random_5pct", num_steps=32,
                                      ensemble_size=4, num_trajectories=2),
  )
