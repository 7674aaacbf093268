"""Your own system: trajectories you bring, no PDE section.

`system="custom"` takes the variable and dimension names from the data
(train/validation/test splits with dims trajectory, time, *spatial; see
docs/own_observations.md, "Bring your own data"). Set the grid with --set,
e.g. for 2 variables on a 64-point periodic line:

    gencast-control train-ardm --config custom --data DIR --out ardm.npz \\
        --set 'ardm.state_shape=(64, 2)' --set 'ardm.periodic=(True,)'

and on a non-periodic 2-D grid `--set 'ardm.state_shape=(32, 48, 1)' --set
'ardm.periodic=(False, False)'`. `--set pde.model_dt=6.0` gives the time
between two states (default 1.0), `--set 'pde.variables=("h", "u")'` picks and
orders the channels (default: every data variable). The networks and training
budgets are KS-sized; the regimes observe a fraction of the grid points with
error std 0.1 in the data's units: change them to your observing system.
"""

from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.adapters.grid_training import ARDMTrainingConfig
from gencast_control.core.controller import ControllerConfig
from gencast_control.training.controller_training import ControllerTrainingConfig
from gencast_control.systems.experiment import (AssimilationConfig, CustomDataConfig,
                                                DataConfig, ExperimentConfig)
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.core.samplers import SamplerConfig

REGIMES = (
    ObservationRegime("random_10pct", fraction=0.10, noise_std=0.1),
    ObservationRegime("stations_10pct", fraction=0.10, layout="regular",
                      fixed=True, noise_std=0.1),
)


def get_config() -> ExperimentConfig:
  return ExperimentConfig(
      name="custom",
      system="custom",
      pde=CustomDataConfig(),
      data=DataConfig(),
      ardm=GridARDMConfig(
          state_shape=(64, 1), periodic=(True,), history_length=1,
          network=ConvNetConfig(width=32, num_blocks=4, kernel_size=5,
                                dilations=(1, 2, 4, 8), embedding_size=64),
          sampler=SamplerConfig(method="dpmpp_2s", num_steps=6)),
      ardm_training=ARDMTrainingConfig(num_steps=3000, batch_size=32),
      controller=ControllerConfig(horizon=4),
      controller_training=ControllerTrainingConfig(
          batch_size=4, num_steps=800, validate_every=100,
          validation_steps=50),
      regimes=REGIMES,
      train_regimes=tuple(r.name for r in REGIMES),
      assimilation=AssimilationConfig(regime="random_10pct", num_steps=50),
  )
