"""The shipped checkpoints (KS, Kolmogorov flow) match their configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.core import config as config_lib
from gencast_control.systems import pipeline
from gencast_control.adapters.grid import load_grid_ardm
from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.core.controller import bind_controller, load_controller
from gencast_control.systems.experiment import get_system
from gencast_control.core.regimes import sample_observations


@pytest.mark.parametrize("name, state_shape, variable", [
    ("ks", (128, 1), "u"), ("kolmogorov", (64, 64, 1), "vorticity")])
def test_shipped_checkpoints_match_config_and_steer(name, state_shape,
                                                    variable):
  config = config_lib.load_config(name, [])
  ardm_path, controller_path = pipeline.shipped_checkpoints(name)
  ardm, ardm_meta = load_grid_ardm(ardm_path)  # verifies the fingerprint
  assert ardm.config == config.ardm
  assert ardm.state_shape == state_shape
  for section in ("data", "ardm_training"):
    assert ardm_meta["experiment"][section] == config_lib.to_dict(
        getattr(config, section))
  controller_config, params, meta = load_controller(controller_path, ardm)
  assert controller_config == config.controller
  assert meta["ardm_fingerprint"] == ardm.fingerprint
  assert meta["regimes"] == list(config.train_regimes)
  trained = meta["experiment"]["controller_training"]
  expected = config_lib.to_dict(config.controller_training)
  # A controller fine-tuned from another (the spread gate, then the
  # relative cost, the no-harm hinge: the config's docstring) records its own
  # steps, learning rate, seed, cost weighting, spin-up and warm start.
  stage = ("warm_start", "num_steps", "learning_rate", "seed", "relative_cost",
           "no_harm_weight", "spinup")
  same = [k for k in trained if k in expected
          and not (trained["warm_start"] and k in stage)]
  assert {k: trained[k] for k in same} == {k: expected[k] for k in same}

  assert meta["objective"] == config.controller_training.objective

  # Two controlled steps from a (briefly spun-up) solver state.
  truth = get_system(config.system).generate(
      jax.random.PRNGKey(3), 1, 2, config.pde, burn_in_steps=4)
  truth = jnp.asarray(truth[variable].values[0, ..., None])  # [3, *grid, 1]
  obs = sample_observations(config.regime("random_25pct"),
                            jax.random.PRNGKey(4), truth)
  controller = bind_controller(controller_config, ardm.periodic, params)
  key = jax.random.PRNGKey(5)
  controlled = ensemble_rollout(ardm, truth[:1], 2, key, 2, obs, controller,
                                controller_config.horizon)
  unguided = ensemble_rollout(ardm, truth[:1], 2, key, 2)
  assert controlled.shape == unguided.shape == (2, 3) + state_shape
  assert np.isfinite(np.asarray(controlled)).all()
  np.testing.assert_array_equal(controlled[:, 0], unguided[:, 0])
  # The trained controller is not the zero map: it changes the forecast.
  assert float(jnp.abs(controlled[:, 1:] - unguided[:, 1:]).max()) > 1e-3
