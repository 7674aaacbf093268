"""The controlled ARDM end to end on a tiny KS model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.core.assimilation import ensemble_rollout, ensemble_to_dataset
from gencast_control.core.controller import (ControllerConfig, bind_controller,
                                             init_controller)
from gencast_control.training.controller_training import (ControllerTrainingConfig,
                                                          train_controller)
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import ObservationRegime, sample_observations

CONTROLLER = ControllerConfig(
    horizon=2, network=ConvNetConfig(width=12, num_blocks=2, kernel_size=5,
                                     dilations=(1, 2), embedding_size=16))
REGIME = ObservationRegime("r", fraction=0.25, noise_std=0.1)


def _observations(truth, seed=1):
  return sample_observations(REGIME, jax.random.PRNGKey(seed),
                             jnp.asarray(truth))


def test_zero_controller_reproduces_pretrained_sampler_bit_for_bit(
    tiny_ardm, tiny_ks_data):
  truth = tiny_ks_data[0, :13]
  params = init_controller(CONTROLLER, tiny_ardm, jax.random.PRNGKey(0))
  controller = bind_controller(CONTROLLER, tiny_ardm.periodic, params)
  # A freshly initialised controller outputs exactly zero ...
  key = jax.random.PRNGKey(5)
  plain = ensemble_rollout(tiny_ardm, truth[:1], 12, key, 3)
  zero = ensemble_rollout(tiny_ardm, truth[:1], 12, key, 3,
                          _observations(truth), controller, 2)
  np.testing.assert_array_equal(np.asarray(plain), np.asarray(zero))
  # ... and so does any controller whose output layer is zero.
  params = jax.tree.map(lambda p: p + 0.1, params)
  params["controller/~head/head/~_conv/decode"] = jax.tree.map(
      jnp.zeros_like, params["controller/~head/head/~_conv/decode"])
  controller = bind_controller(CONTROLLER, tiny_ardm.periodic, params)
  zero = ensemble_rollout(tiny_ardm, truth[:1], 12, key, 3,
                          _observations(truth), controller, 2)
  np.testing.assert_array_equal(np.asarray(plain), np.asarray(zero))


def test_ensemble_members_differ_and_are_reproducible(tiny_ardm, tiny_ks_data):
  history = tiny_ks_data[0, :1]
  a = np.asarray(ensemble_rollout(tiny_ardm, history, 5,
                                  jax.random.PRNGKey(0), 4))
  b = np.asarray(ensemble_rollout(tiny_ardm, history, 5,
                                  jax.random.PRNGKey(0), 4))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (4, 6, 32, 1)
  assert np.abs(a[0, -1] - a[1, -1]).max() > 0
  ds = ensemble_to_dataset(a, ["u"], ["x"])
  assert ds["u"].dims == ("sample", "time", "x")


def test_state_trained_controller_lowers_state_error_and_ardm_stays_frozen(
    tiny_ardm, tiny_ks_data):
  before = jax.tree.map(np.array, tiny_ardm.params)
  fingerprint = tiny_ardm.fingerprint
  training = ControllerTrainingConfig(
      objective="state", members=2, window=3, spinup=2, cold_fraction=0.5,
      batch_size=4, num_steps=60, learning_rate=3e-3, log_every=10)
  params, history = train_controller(tiny_ardm, tiny_ks_data[:12], [REGIME],
                                     CONTROLLER, training, progress=False)
  jax.tree.map(np.testing.assert_array_equal, before,
               jax.tree.map(np.asarray, tiny_ardm.params))
  assert tiny_ardm.fingerprint == fingerprint
  assert history[-1]["score"] < history[0]["score"]

  # Unseen trajectories, cold start (members from other trajectories' states):
  # the controlled ensemble mean is closer to the truth than the forecast's.
  controller = bind_controller(CONTROLLER, tiny_ardm.periodic, params)
  errors = {"controlled": [], "unguided": []}
  for k in (12, 13, 14):
    truth = tiny_ks_data[k]
    initial = tiny_ks_data[:4, 30:31]  # [M=4, h=1, X, C], not this truth
    key = jax.random.PRNGKey(k)
    runs = {"unguided": ensemble_rollout(tiny_ardm, initial, 40, key, 4),
            "controlled": ensemble_rollout(tiny_ardm, initial, 40, key, 4,
                                           _observations(truth, k),
                                           controller, 2)}
    for name, ens in runs.items():
      mean = np.asarray(ens).mean(0)[10:]
      errors[name].append(np.sqrt(np.mean((mean - truth[10:])**2)))
  assert np.mean(errors["controlled"]) < 0.7 * np.mean(errors["unguided"])


def test_bad_inputs_raise_clear_errors(tiny_ardm, tiny_ks_data):
  params = init_controller(CONTROLLER, tiny_ardm, jax.random.PRNGKey(0))
  controller = bind_controller(CONTROLLER, tiny_ardm.periodic, params)
  truth = tiny_ks_data[0, :6]
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="initial history must have shape"):
    ensemble_rollout(tiny_ardm, truth[:1, :16], 5, key)
  nan_history = truth[:1].copy()
  nan_history[0, 3] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    ensemble_rollout(tiny_ardm, nan_history, 5, key)
  with pytest.raises(ValueError, match="needs observations"):
    ensemble_rollout(tiny_ardm, truth[:1], 5, key, controller=controller)
  with pytest.raises(ValueError, match="cover 6 times"):
    ensemble_rollout(tiny_ardm, truth[:1], 9, key, 1, _observations(truth),
                     controller, 2)
  other_grid = _observations(np.zeros((6, 16, 1), np.float32))
  with pytest.raises(ValueError, match="grid of shape"):
    ensemble_rollout(tiny_ardm, truth[:1], 5, key, 1, other_grid, controller,
                     2)
  with pytest.raises(ValueError, match="do not match the ARDM state shape"):
    train_controller(tiny_ardm, tiny_ks_data[..., :16, :], [REGIME],
                     CONTROLLER, ControllerTrainingConfig(num_steps=1),
                     progress=False)


def test_held_out_observations_partition_the_stream():
  from gencast_control.training.controller_training import split_observations
  truth = jnp.ones((6, 40, 1))
  obs = sample_observations(ObservationRegime("r", fraction=0.5),
                            jax.random.PRNGKey(0), truth)
  shown, held_out = split_observations(obs, jax.random.PRNGKey(1), 0.3)
  np.testing.assert_array_equal(shown.mask + held_out.mask, obs.mask)
  assert float((shown.mask * held_out.mask).sum()) == 0.0
  np.testing.assert_array_equal(shown.values + held_out.values, obs.values)
  fraction = float(held_out.mask.sum() / obs.mask.sum())
  assert 0.2 < fraction < 0.4


def test_perturbed_observations_are_drawn_once_per_member_and_time():
  """Each member sees y_j + eps_j, eps_j ~ N(0, sigma_j^2): unobserved
  entries stay empty, y_j is perturbed alike at every step that previews it,
  and members differ."""
  from gencast_control.core.assimilation import perturbed_preview
  from gencast_control.core.observations import Observations
  rng = np.random.default_rng(0)
  values = rng.normal(size=(6, 4000, 1)).astype(np.float32)
  mask = (rng.random(values.shape) < 0.5).astype(np.float32)
  std = np.where(rng.random(values.shape) < 0.5, 0.1, 2.0).astype(np.float32)
  observations = Observations.from_arrays(values, mask, std)
  key = jax.random.PRNGKey(3)
  first = perturbed_preview(observations.preview(0, 3), key, 1)
  second = perturbed_preview(observations.preview(1, 3), key, 2)
  np.testing.assert_array_equal(np.asarray(first.values[1:]),
                                np.asarray(second.values[:2]))
  clean = observations.preview(0, 3)
  observed = np.asarray(clean.mask) > 0
  np.testing.assert_array_equal(np.asarray(first.values)[~observed], 0.0)
  eps = (np.asarray(first.values) - np.asarray(clean.values))[observed]
  standardised = eps / np.asarray(clean.error_std)[observed]
  assert abs(standardised.mean()) < 0.05
  assert abs(standardised.std() - 1.0) < 0.05
  other = perturbed_preview(clean, jax.random.PRNGKey(4), 1)
  assert not np.allclose(np.asarray(other.values)[observed],
                         np.asarray(first.values)[observed])


def test_perturbed_observations_act_only_through_the_control(
    tiny_ardm, tiny_ks_data):
  import dataclasses
  truth = tiny_ks_data[0, :9]
  config = dataclasses.replace(CONTROLLER, perturbed_observations=True)
  params = init_controller(CONTROLLER, tiny_ardm, jax.random.PRNGKey(0))
  key, observations = jax.random.PRNGKey(5), _observations(truth)
  run = lambda config, params: np.asarray(ensemble_rollout(
      tiny_ardm, truth[:1], 8, key, 3, observations,
      bind_controller(config, tiny_ardm.periodic, params), 2))
  # u = 0: the pretrained sampler, perturbed or not ...
  np.testing.assert_array_equal(run(config, params), run(CONTROLLER, params))
  # ... while a controller that acts sees other observations.
  params = jax.tree.map(lambda p: p + 0.1, params)
  perturbed, plain = run(config, params), run(CONTROLLER, params)
  assert np.all(np.isfinite(perturbed))
  assert np.abs(perturbed - plain).max() > 1e-3
