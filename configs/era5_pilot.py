"""ERA5 pilot: a small grid ARDM on WeatherBench2's 5.625 deg ERA5.

The 64 x 32 equiangular conservative store (no poles, latitude ascending;
configs/stores.py `era5_5p625deg_6h`), four channels (z500, t850, t2m, u850)
every 12 h. Trajectories of 20 steps (10 days) are cut from the training years
2008-2017, validation 2018 and test 2020 (WeatherBench2's test year) and
standardised per channel with the training-period mean and std
(era5_trajectories). The ARDM is a 2-D conv net, non-periodic in latitude
(edge padding) and periodic in longitude.

Three station-like observing densities: a fixed random network of 1 %, 5 % or
20 % of the grid points (20, 102, 410 points), observed every step with error
std 0.1 in standardised units, i.e. per-variable errors sigma_c = 0.1 s_c
(s_c: the channel's training std). The ARDM has 507,204 parameters, the
controller 74,788. No checkpoints are shipped and no results are measured for
this config yet: it needs the public WeatherBench2 bucket (see docs/benchmark.md's
"ERA5 pilot").
"""

from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.adapters.grid_training import ARDMTrainingConfig
from gencast_control.core.controller import ControllerConfig
from gencast_control.training.controller_training import ControllerTrainingConfig
from gencast_control.data.era5_trajectories import ERA5DataConfig
from gencast_control.systems.experiment import (AssimilationConfig, DataConfig,
                                                ExperimentConfig)
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.core.samplers import SamplerConfig

CHANNELS = ("geopotential@500", "temperature@850", "2m_temperature",
            "u_component_of_wind@850")
NOISE = 0.1  # in units of each channel's training std

REGIMES = (
    ObservationRegime("stations_1pct", fraction=0.01, fixed=True,
                      noise_std=NOISE),
    ObservationRegime("stations_5pct", fraction=0.05, fixed=True,
                      noise_std=NOISE),
    ObservationRegime("stations_20pct", fraction=0.20, fixed=True,
                      noise_std=NOISE),
)


def get_config() -> ExperimentConfig:
  return ExperimentConfig(
      name="era5_pilot",
      system="era5",
      pde=ERA5DataConfig(
          store="era5_5p625deg_6h", channels=CHANNELS, step_hours=12,
          train_period=("2008-01-01", "2017-12-31"),
          validation_period=("2018-01-01", "2018-12-31"),
          test_period=("2020-01-01", "2020-12-31"), timeout_s=60.0),
      # Counts are maxima for ERA5 (0 = every 10-day window of the period),
      # evenly spread over the period.
      data=DataConfig(num_train=0, num_validation=8, num_test=16,
                      num_steps=20, burn_in_steps=0, seed=0),
      ardm=GridARDMConfig(
          state_shape=(32, 64, len(CHANNELS)), periodic=(False, True),
          history_length=1,
          network=ConvNetConfig(width=64, num_blocks=6, kernel_size=3,
                                dilations=(1, 2, 4, 8), embedding_size=64),
          sampler=SamplerConfig(method="dpmpp_2s", num_steps=6,
                                sigma_max=10.0, sigma_min=0.02, rho=7.0)),
      ardm_training=ARDMTrainingConfig(num_steps=20000, batch_size=32,
                                       learning_rate=1e-3),
      controller=ControllerConfig(
          horizon=2,
          network=ConvNetConfig(width=32, num_blocks=3, kernel_size=3,
                                dilations=(1, 2, 4), embedding_size=32)),
      controller_training=ControllerTrainingConfig(
          window=4, spinup=8, batch_size=8, num_steps=2000,
          learning_rate=1e-3, control_cost=1e-2),
      regimes=REGIMES,
      train_regimes=tuple(r.name for r in REGIMES),
      assimilation=AssimilationConfig(regime="stations_5pct", num_steps=20,
                                      ensemble_size=8, num_trajectories=16),
  )
