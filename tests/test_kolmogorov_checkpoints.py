"""The shipped Kolmogorov-flow checkpoints match configs/kolmogorov.py."""

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control import config as config_lib
from gencast_control import pipeline
from gencast_control.adapters.grid import load_grid_ardm
from gencast_control.assimilation import ensemble_rollout
from gencast_control.controller import bind_controller, load_controller
from gencast_control.pdes.kolmogorov import generate_kolmogorov_dataset
from gencast_control.regimes import sample_observations


def test_shipped_kolmogorov_checkpoints_match_config_and_steer():
  config = config_lib.load_config("kolmogorov", [])
  ardm_path, controller_path = pipeline.shipped_checkpoints("kolmogorov")
  ardm, ardm_meta = load_grid_ardm(ardm_path)  # verifies the fingerprint
  assert ardm.config == config.ardm
  assert ardm.state_shape == (64, 64, 1)
  for section in ("data", "ardm_training"):
    assert ardm_meta["experiment"][section] == config_lib.to_dict(
        getattr(config, section))
  controller_config, params, meta = load_controller(controller_path, ardm)
  assert controller_config == config.controller
  assert meta["ardm_fingerprint"] == ardm.fingerprint
  assert meta["regimes"] == list(config.train_regimes)
  trained = meta["experiment"]["controller_training"]
  expected = config_lib.to_dict(config.controller_training)
  assert {k: trained[k] for k in trained if k in expected} == {
      k: expected[k] for k in trained if k in expected}

  # Two controlled steps from a (briefly spun-up) solver state.
  truth = generate_kolmogorov_dataset(jax.random.PRNGKey(3), 1, 2, config.pde,
                                      burn_in_steps=4)
  truth = jnp.asarray(truth["vorticity"].values[0, ..., None])  # [3, 64, 64, 1]
  obs = sample_observations(config.regime("random_25pct"),
                            jax.random.PRNGKey(4), truth)
  controller = bind_controller(controller_config, ardm.periodic, params)
  key = jax.random.PRNGKey(5)
  controlled = ensemble_rollout(ardm, truth[:1], 2, key, 2, obs, controller,
                                controller_config.horizon)
  unguided = ensemble_rollout(ardm, truth[:1], 2, key, 2)
  assert controlled.shape == unguided.shape == (2, 3, 64, 64, 1)
  assert np.isfinite(np.asarray(controlled)).all()
  np.testing.assert_array_equal(controlled[:, 0], unguided[:, 0])
  # The trained controller is not the zero map: it changes the forecast.
  assert float(jnp.abs(controlled[:, 1:] - unguided[:, 1:]).max()) > 1e-3
