"""The GenCast study, offline: DeepMind's GenCast trained on the Held-Suarez sphere.

The Held-Suarez store of `configs/heldsuarez.py` (dinosaur, WeatherBench2's
64 x 32 equiangular grid without poles, 12-hourly) with DeepMind's GenCast
architecture and loss (adapters/gencast/training.py) in place of the conv
ARDM: a GenCast task of the store's four atmospheric variables on 250/500/850
hPa and surface pressure (13 channels), the date features as forcings, no
static inputs, 2 input frames (24 h) as DeepMind's.

    gencast-control simulate --config heldsuarez_gencast --out data/hs
    gencast-control train-ardm --config heldsuarez_gencast --data data/hs \
        --out runs/hsgc/gencast.npz
    gencast-control train-controller --config heldsuarez_gencast \
        --data data/hs --ardm runs/hsgc/gencast.npz --out runs/hsgc/controller.npz
    gencast-control pilot --config heldsuarez_gencast --data data/hs \
        --ardm runs/hsgc/gencast.npz --controller runs/hsgc/controller.npz

Sizes fit the 2-core CPU: an icosahedral mesh refined 3 times (642 nodes),
latent 32, 4 transformer layers (DeepMind's 1 deg Mini: mesh 4, latent 512,
16 layers); trained with DeepMind's 20 noise levels, it samples with 6
sub-steps in controller training, the pilot and the benchmarks
(`ardm.sampling_noise_levels`). The observing systems and their errors are
the Held-Suarez pilot's, given per variable in physical units. The study's
commands, tables and reading: docs/gencast_study.md.
"""

from gencast_control.adapters.gencast.training_config import (
    GenCastArchitectureConfig, GenCastTrainingConfig)
from gencast_control.configs import heldsuarez
from gencast_control.systems.experiment import (AssimilationConfig, DataConfig,
                                                ExperimentConfig)
from gencast_control.systems.held_suarez import (HeldSuarezConfig,
                                                 HeldSuarezDataConfig)
from gencast_control.training.controller_training import ControllerTrainingConfig

ARCHITECTURE = GenCastArchitectureConfig(
    surface_variables=("surface_pressure",),
    atmospheric_variables=("temperature", "geopotential",
                           "u_component_of_wind", "v_component_of_wind"),
    levels=(250, 500, 850), mesh_size=3, latent_size=32, num_layers=4,
    num_heads=4, attention_k_hop=8, num_noise_levels=20,
    sampling_noise_levels=6)

CHANNELS = ARCHITECTURE.channels  # GenCast's state channels, in its order
# The Held-Suarez pilot's observing systems and per-variable errors.
REGIMES = heldsuarez.regimes(CHANNELS)


def get_config() -> ExperimentConfig:
  return ExperimentConfig(
      name="heldsuarez_gencast",
      system="era5",
      pde=HeldSuarezDataConfig(channels=CHANNELS, step_hours=12,
                               simulation=HeldSuarezConfig()),
      # Windows of 2 input frames + 20 steps (10 days).
      data=DataConfig(num_train=0, num_validation=8, num_test=8,
                      num_steps=21, burn_in_steps=0, seed=0),
      ardm=ARCHITECTURE,
      ardm_training=GenCastTrainingConfig(
          num_steps=2000, batch_size=4, learning_rate=1e-3,
          checkpoint_every=100, log_every=25),
      # The Held-Suarez pilot's controller.
      controller=heldsuarez.get_config().controller,
      # Sized for 2 CPU cores, where one controller training step (2
      # members through a 12 h GenCast step of 6 sub-steps with gradients,
      # after up to 2 on-policy spin-up steps) takes ~10 s: batch 1, 120
      # steps, the best of three validation rollouts kept.
      controller_training=ControllerTrainingConfig(
          members=2, window=1, spinup=2, batch_size=1, num_steps=120,
          learning_rate=2e-3, control_cost=1e-2, checkpoint_every=10,
          log_every=5, validate_every=40, validation_steps=6,
          validation_members=2),
      regimes=REGIMES,
      train_regimes=tuple(r.name for r in REGIMES),
      # The pilot: 2 test windows x 8 steps (4 days) x 4 members per
      # regime and method, to run in about 20 min on 2 CPU cores.
      assimilation=AssimilationConfig(regime="stations_10pct", num_steps=8,
                                      ensemble_size=4, num_trajectories=2),
  )
