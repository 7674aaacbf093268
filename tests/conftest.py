"""Shared fixtures: a tiny KS ARDM trained in seconds, used by several tests."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gencast_control.adapters.grid import GridARDMConfig  # noqa: E402
from gencast_control.ardm_training import (ARDMTrainingConfig,  # noqa: E402
                                           train_ardm)
from gencast_control.networks import ConvNetConfig  # noqa: E402
from gencast_control.pdes.ks import KSConfig, generate_ks_dataset  # noqa: E402
from gencast_control.samplers import SamplerConfig  # noqa: E402

TINY_KS = KSConfig(num_points=32, domain_length=22.0, solver_dt=0.25,
                   model_dt=1.0)
TINY_ARDM = GridARDMConfig(
    state_shape=(32, 1), periodic=(True,), history_length=1,
    network=ConvNetConfig(width=16, num_blocks=2, kernel_size=5,
                          dilations=(1, 2), embedding_size=16),
    sampler=SamplerConfig(method="dpmpp_2s", num_steps=4, sigma_max=10.0))


@pytest.fixture(scope="session")
def tiny_ks_data() -> np.ndarray:
  """[16, 41, 32, 1] KS trajectories on a small domain."""
  ds = generate_ks_dataset(jax.random.PRNGKey(0), 16, 40, TINY_KS,
                           burn_in_steps=100)
  return ds["u"].values[..., None]


@pytest.fixture(scope="session")
def tiny_ardm(tiny_ks_data):
  ardm, _ = train_ardm(tiny_ks_data, TINY_ARDM,
                       ARDMTrainingConfig(num_steps=300, batch_size=16,
                                          learning_rate=3e-3),
                       progress=False)
  return ardm
