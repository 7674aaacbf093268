"""Kuramoto-Sivashinsky: the built-in demo experiment.

KS on [0, 32 pi) with 128 points (Kassam & Trefethen 2005's setup), one model
step = 1 time unit. The ARDM is a 1-D dilated conv net with a
6-sub-step DPM-Solver++(2S) sampler (~67k parameters); the controller previews
H = 4 observation frames (the longest gap, every4_25pct's, is 4 steps): a
per-step encoder and a small per-sub-step head. It is trained with the
"state" objective (fair CRPS of 2 members against the truth), half of the
examples from cold starts, on-policy spin-ups of up to 16 steps, and a
200-step cold-start validation rollout every 100 steps (best kept). Eight
observation regimes are defined, two of them networks of mixed quality (each
station its own error std); the controller is trained on all at once.

The controller is ensemble-aware (`spread_gate`: its control is gated by the
ensemble's spread; `ensemble_gain`: its head weighs innovations by the
spread's Kalman gain; gencast_control.core.controller). The shipped one was
trained in stages, the best by validation kept in each: 800 steps of this
config without the gate (spread_gate=False), then seven fine-tunings of 300
steps at learning rate 1e-3, each from the one before: two into the gate
(seeds 0 and 1), two more with the relative cost (`relative_cost`: each
example weighs by its relative improvement, so starts near the truth count;
seeds 0 and 1), and two with the relative cost and the no-harm hinge against
the unguided forecast (`no_harm_weight` 1 then 10, seeds 3 and 4; chosen on
the validation split by benchmarks/select_controller.py), and one into the
ensemble gain (`ensemble_gain`: the head also sees the innovations weighted
by s^2 / (s^2 + sigma^2), s the ensemble's spread; relative cost,
no_harm_weight 10, seed 5), chosen on 8 validation trajectories against the
same stage without it (docs/results/select_controller_ks_ensemble_gain.md).
Every fine-tuning sets num_steps=300 and learning_rate=1e-3; the 800-step
run and stages 1-6 also set controller.ensemble_gain=False (the "..."
below stands for the first command's arguments):

    gencast-control train-controller --config ks --data DATA --ardm ARDM \
      --out stage1.npz --set controller_training.num_steps=300 \
      --set controller_training.learning_rate=1e-3 \
      --set controller.ensemble_gain=False \
      --set controller_training.warm_start=UNGATED.npz
    gencast-control train-controller ... --out stage2.npz \
      --set controller_training.warm_start=stage1.npz \
      --set controller_training.seed=1
    gencast-control train-controller ... --out stage3.npz \
      --set controller_training.warm_start=stage2.npz \
      --set controller_training.relative_cost=True
    gencast-control train-controller ... --out stage4.npz \
      --set controller_training.warm_start=stage3.npz \
      --set controller_training.relative_cost=True \
      --set controller_training.seed=1
    gencast-control train-controller ... --out stage5.npz \
      --set controller_training.warm_start=stage4.npz \
      --set controller_training.relative_cost=True \
      --set controller_training.no_harm_weight=1 \
      --set controller_training.seed=3
    gencast-control train-controller ... --out stage6.npz \
      --set controller_training.warm_start=stage5.npz \
      --set controller_training.relative_cost=True \
      --set controller_training.no_harm_weight=10 \
      --set controller_training.seed=4
    gencast-control train-controller ... --out ks_controller.npz \
      --set controller.ensemble_gain=True \
      --set controller_training.warm_start=stage6.npz \
      --set controller_training.relative_cost=True \
      --set controller_training.no_harm_weight=10 \
      --set controller_training.seed=5
"""

from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.adapters.grid_training import ARDMTrainingConfig
from gencast_control.core.controller import ControllerConfig
from gencast_control.training.controller_training import ControllerTrainingConfig
from gencast_control.systems.experiment import (AssimilationConfig, DataConfig,
                                                ExperimentConfig)
from gencast_control.core.networks import ConvNetConfig
from gencast_control.systems.ks import KSConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.core.samplers import SamplerConfig

REGIMES = (
    ObservationRegime("random_25pct", fraction=0.25, noise_std=0.1),
    ObservationRegime("random_10pct", fraction=0.10, noise_std=0.1),
    ObservationRegime("random_5pct", fraction=0.05, noise_std=0.1),
    ObservationRegime("stations_10pct", fraction=0.10, layout="regular",
                      fixed=True, noise_std=0.1),
    ObservationRegime("every4_25pct", fraction=0.25, every=4, noise_std=0.1),
    ObservationRegime("noisy_25pct", fraction=0.25, noise_std=0.5),
    # A network of mixed quality: each station's error std is log-uniform in
    # [0.05, 1] (field std ~1.3), the same station keeps its quality.
    ObservationRegime("mixed_stations_25pct", fraction=0.25, layout="regular",
                      fixed=True, noise_std=0.05, noise_std_max=1.0),
    ObservationRegime("mixed_random_10pct", fraction=0.10, noise_std=0.05,
                      noise_std_max=1.0),
)


def get_config() -> ExperimentConfig:
  return ExperimentConfig(
      name="ks",
      system="ks",
      pde=KSConfig(num_points=128, domain_length=32 * 3.141592653589793,
                   solver_dt=0.25, model_dt=1.0),
      data=DataConfig(num_train=64, num_validation=8, num_test=8,
                      num_steps=200, burn_in_steps=200, seed=0),
      ardm=GridARDMConfig(
          state_shape=(128, 1), periodic=(True,), history_length=1,
          network=ConvNetConfig(width=32, num_blocks=4, kernel_size=5,
                                dilations=(1, 2, 4, 8), embedding_size=64),
          sampler=SamplerConfig(method="dpmpp_2s", num_steps=6,
                                sigma_max=10.0, sigma_min=0.02, rho=7.0)),
      ardm_training=ARDMTrainingConfig(num_steps=3000, batch_size=32,
                                       learning_rate=2e-3),
      controller=ControllerConfig(
          horizon=4,
          network=ConvNetConfig(width=24, num_blocks=3, kernel_size=5,
                                dilations=(1, 4, 16), embedding_size=32),
          encoding_channels=16,
          head=ConvNetConfig(width=16, num_blocks=1, kernel_size=3,
                             dilations=(1,), embedding_size=16),
          spread_gate=True, ensemble_gain=True),
      controller_training=ControllerTrainingConfig(
          objective="state", members=2, window=4, spinup=16, on_policy=True,
          cold_fraction=0.5, batch_size=4, num_steps=800, learning_rate=2e-3,
          control_cost=1e-3, checkpoint_every=50, validate_every=100,
          validation_steps=200, validation_members=4),
      regimes=REGIMES,
      train_regimes=tuple(r.name for r in REGIMES),
      assimilation=AssimilationConfig(regime="random_10pct", num_steps=100,
                                      ensemble_size=8, num_trajectories=4),
  )
