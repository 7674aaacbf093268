"""Controller training through GenCast 1 deg: the cloud training job's config.

Run by `gencast-control train-controller --config gencast_1deg_train --out
DIR/controller.npz` (docs/cloud.md, "Training the GenCast controller on a cloud
VM"). Examples are GenCast batches built from the WeatherBench2 ERA5 store
subsampled to 1 deg (configs/stores.py "era5_1deg_6h") at random 00/12 UTC
initialisation times of `years`, read from the store step by step (the next
step's batch on a background thread; with several hosts each reads only its
own shard of the times and its part of each batch), not held in host memory:
a host holds a few batches (about 66 MB per example), not all `num_examples`
(~16 GB for 256). GenCast's weights and statistics come from DeepMind's
bucket (configs/gencast_assets.py) or local copies.

Training is the project's one controller training
(gencast_control.training.controller_training) on GenCast as a FrozenARDM
(adapters/gencast/ardm.py), with the "state" objective: the fair CRPS of
`members` controlled rollouts against the ERA5 truth, which does not reward
copying observation noise (docs/method.md).

Memory (adapters/gencast/ardm.py, estimated, not measured on an
accelerator): one member of one 12 h window keeps ~1.2 GiB of rematerialised
sub-step states plus one sub-step's backward of two GenCast denoiser calls;
an example has 2 members, so each device holds one example: batch_size =
number of devices (8 on an 8-GPU VM or a TPU slice with 8 chips of >= 40 GiB
each).

A config for another GenCast checkpoint or store is a file like this one
returning a GenCastJobConfig (adapters/gencast/job.py) with other fields.
"""

from gencast_control.adapters.gencast.job import GenCastJobConfig
from gencast_control.core.controller import ControllerConfig
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.training.controller_training import (
    ControllerTrainingConfig)


def get_config() -> GenCastJobConfig:
  return GenCastJobConfig(
      checkpoint="1p0deg_mini", store="era5_1deg_6h", years=(2016, 2017),
      num_examples=256,
      controller=ControllerConfig(
          horizon=2, network=ConvNetConfig(width=64, num_blocks=4,
                                           kernel_size=3,
                                           dilations=(1, 2, 4, 8),
                                           embedding_size=64)),
      controller_training=ControllerTrainingConfig(
          objective="state", members=2, window=1, spinup=0,
          cold_fraction=0.0, batch_size=8, num_steps=2000,
          learning_rate=3e-4, shard_batch=True),
      regimes=(
          ObservationRegime("stations_1pct", fraction=0.01, fixed=True,
                            noise_std=0.1),
          ObservationRegime("random_5pct", fraction=0.05, noise_std=0.1),
      ))
