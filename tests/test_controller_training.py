"""The controller's objectives, its encoder/head split, cold starts, and
best-validation checkpoints."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gencast_control.core import config as config_lib
from gencast_control.training import training_loop
from gencast_control.core.ardm import ControllerInputs
from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.core.controller import (ControllerConfig, bind_controller,
                                             config_from_metadata,
                                             extend_params, init_controller,
                                             HEAD_INPUT, load_warm_start,
                                             save_controller, substep_features)
from gencast_control.training.controller_training import (
    RELATIVE_FLOOR, ControllerTrainingConfig, controller_loss_fn,
    ensemble_mean_rmse, example_cost_fn, fair_crps, no_harm_hinge,
    train_controller, window_batches, window_score)
from gencast_control.core.regimes import ObservationRegime
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.observations import Observations, Preview

CONTROLLER = ControllerConfig(
    horizon=2, network=ConvNetConfig(width=8, num_blocks=1, kernel_size=3,
                                     dilations=(1,), embedding_size=8),
    encoding_channels=4,
    head=ConvNetConfig(width=8, num_blocks=1, kernel_size=3, dilations=(1,),
                       embedding_size=8))


def test_fair_crps_matches_brute_force():
  rng = np.random.default_rng(0)
  members, target = rng.normal(size=(4, 7)), rng.normal(size=7)
  expected = np.zeros(7)
  for i in range(7):
    skill = np.mean([abs(x - target[i]) for x in members[:, i]])
    pairs = [abs(a - b) for a, b in itertools.permutations(members[:, i], 2)]
    expected[i] = skill - np.sum(pairs) / (2 * 4 * 3)
  np.testing.assert_allclose(np.asarray(fair_crps(jnp.asarray(members),
                                                  jnp.asarray(target))),
                             expected, rtol=1e-5)


def test_state_score_is_proper_where_squared_error_collapses():
  """Expected scores of 2-member ensembles drawn N(0, s^2) for a truth
  N(0, 1): the fair CRPS is lowest at the calibrated s = 1, the squared
  error of the members at the collapsed s = 0."""
  key = jax.random.PRNGKey(0)
  k_truth, k_members = jax.random.split(key)
  truth = jax.random.normal(k_truth, (20000,))
  eps = jax.random.normal(k_members, (2, 20000))
  spreads = [0.0, 0.5, 1.0, 1.5, 2.0]
  crps = [float(jnp.mean(fair_crps(s * eps, truth))) for s in spreads]
  mse = [float(jnp.mean((s * eps - truth)**2)) for s in spreads]
  assert int(np.argmin(crps)) == spreads.index(1.0)
  assert int(np.argmin(mse)) == spreads.index(0.0)


def test_heldout_score_counts_noise_and_only_scored_entries():
  truth = jnp.zeros((3, 10, 1))
  mask = jnp.zeros((3, 10, 1)).at[:, :5].set(1.0)
  values = mask * 2.0
  obs = Observations(values=values, mask=mask, noise_std=jnp.asarray(1.0))
  states = jnp.zeros((2, 3, 10, 1))
  # Unscored entries (mask 0) with wild states do not change the score.
  wild = states.at[:, :, 5:].set(1e3)
  key = jax.random.PRNGKey(1)
  a = window_score("heldout", states, truth, obs, jnp.ones(1), key)
  b = window_score("heldout", wild, truth, obs, jnp.ones(1), key)
  assert float(a) == pytest.approx(float(b))
  assert float(a) > 0
  # The in-sample misfit of a state at the observations is zero.
  fit = window_score("observations", values[None].repeat(2, 0), truth, obs,
                     jnp.ones(1), key)
  assert float(fit) == 0.0


def test_heldout_score_uses_each_observations_error_std():
  rng = np.random.default_rng(2)
  mask = jnp.asarray(rng.uniform(size=(3, 10, 1)) < 0.6, jnp.float32)
  std = jnp.asarray(rng.uniform(0.1, 1.0, size=(3, 10, 1)), jnp.float32)
  values = mask * jnp.asarray(rng.normal(size=(3, 10, 1)), jnp.float32)
  obs = Observations(values=values, mask=mask, noise_std=std)
  states = jnp.asarray(rng.normal(size=(2, 3, 10, 1)), jnp.float32)
  key = jax.random.PRNGKey(3)
  noisy = states + std * jax.random.normal(key, states.shape)
  expected = (jnp.sum(mask * fair_crps(noisy / std, values / std))
              / jnp.sum(mask))
  got = window_score("heldout", states, values, obs, jnp.ones(1), key)
  assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_training_config_rejects_bad_settings():
  with pytest.raises(ValueError, match="unknown controller objective"):
    ControllerTrainingConfig(objective="mse")
  with pytest.raises(ValueError, match="members >= 2"):
    ControllerTrainingConfig(objective="state", members=1)
  with pytest.raises(ValueError, match="holdout_fraction"):
    ControllerTrainingConfig(objective="heldout", holdout_fraction=0.0)
  with pytest.raises(ValueError, match="cold_fraction"):
    ControllerTrainingConfig(cold_fraction=1.5)
  with pytest.raises(ValueError, match="relative_cost needs the 'state'"):
    ControllerTrainingConfig(objective="heldout", relative_cost=True)


def test_a_relative_cost_weighs_each_example_by_its_own_cost(tiny_ardm,
                                                            tiny_ks_data):
  """relative_cost: the loss is the mean of log(J_i) over the examples, so
  its gradient is the mean of dJ_i / J_i (each example by its relative
  improvement; a near-truth example counts as much as a cold one)."""
  params = _perturbed_params(tiny_ardm)
  regimes = [ObservationRegime("r", fraction=0.5, noise_std=0.1)]
  key = jax.random.PRNGKey(3)
  scale = np.ones(1, np.float32)
  plain, relative = (ControllerTrainingConfig(batch_size=2, window=2,
                                              spinup=2, cold_fraction=0.5,
                                              relative_cost=r)
                     for r in (False, True))
  windows, cold, _ = window_batches(tiny_ks_data, None, 2, 2, 5, 1)(key)
  keys = jax.random.split(jax.random.split(key, 3)[2], 2)  # as loss_fn's
  cost = example_cost_fn(tiny_ardm, scale, regimes, CONTROLLER, plain)
  examples = [jax.value_and_grad(cost, has_aux=True)(
      params, windows[i], cold[i], keys[i]) for i in range(2)]
  costs = np.array([float(c) for (c, _), _ in examples])
  assert costs.max() > 1.2 * costs.min()  # so their weights differ
  loss = controller_loss_fn(tiny_ardm, scale, regimes, CONTROLLER, relative)
  (value, _), grads = jax.value_and_grad(loss, has_aux=True)(
      params, key, (windows, cold, None))
  np.testing.assert_allclose(value, np.mean(np.log(costs + RELATIVE_FLOOR)),
                             rtol=1e-5)
  expected = jax.tree.map(
      lambda a, b: (a / (costs[0] + RELATIVE_FLOOR)
                    + b / (costs[1] + RELATIVE_FLOOR)) / 2,
      examples[0][1], examples[1][1])
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(grads)):
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-6)


def _perturbed_params(tiny_ardm):
  params = init_controller(CONTROLLER, tiny_ardm, jax.random.PRNGKey(0))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  return jax.tree.unflatten(tree, [
      x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def test_encoder_and_head_compose_to_the_full_controller(tiny_ardm):
  controller = bind_controller(CONTROLLER, tiny_ardm.periodic,
                               _perturbed_params(tiny_ardm))
  rng = np.random.default_rng(0)
  field = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  preview = Preview(field(2, 32, 1), jnp.ones((2, 32, 1)),
                    jnp.arange(1.0, 3.0), jnp.exp(field(2, 32, 1)))
  inputs = ControllerInputs(field(32, 1), field(32, 1), jnp.asarray(0.7),
                            field(32, 1), preview)
  encoding = controller.encode(inputs.conditioning, preview)
  assert encoding.shape == (32, CONTROLLER.encoding_channels)
  np.testing.assert_allclose(np.asarray(controller.head(encoding, inputs)),
                             np.asarray(controller(inputs)), rtol=1e-6)


def test_without_observations_a_gated_controller_does_not_act(tiny_ardm):
  """zero_without_observations: u = 0 exactly when nothing is observed in the
  horizon, a response otherwise; the parameters are the ungated ones, and
  the encoder/head split composes to the full controller."""
  gated_config = dataclasses.replace(CONTROLLER,
                                     zero_without_observations=True)
  params = _perturbed_params(tiny_ardm)
  ungated = bind_controller(CONTROLLER, tiny_ardm.periodic, params)
  gated = bind_controller(gated_config, tiny_ardm.periodic, params)
  assert (jax.tree.structure(init_controller(gated_config, tiny_ardm,
                                             jax.random.PRNGKey(0)))
          == jax.tree.structure(params))
  rng = np.random.default_rng(0)
  field = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  mask = jnp.asarray(rng.uniform(size=(2, 32, 1)) < 0.3, jnp.float32)
  observed = Preview(mask * field(2, 32, 1), mask, jnp.arange(1.0, 3.0),
                     jnp.where(mask > 0, 0.1, 1.0))
  nothing = Preview(jnp.zeros((2, 32, 1)), jnp.zeros((2, 32, 1)),
                    jnp.arange(1.0, 3.0), jnp.ones((2, 32, 1)))
  inputs = ControllerInputs(field(32, 1), field(32, 1), jnp.asarray(0.7),
                            field(32, 1), nothing)
  assert np.abs(np.asarray(ungated(inputs))).max() > 1e-3
  np.testing.assert_array_equal(np.asarray(gated(inputs)), 0.0)
  inputs = inputs._replace(preview=observed)
  u = np.asarray(gated(inputs))
  assert np.abs(u).max() > 1e-3
  encoding = gated.encode(inputs.conditioning, observed)
  np.testing.assert_allclose(np.asarray(gated.head(encoding, inputs)), u,
                             rtol=1e-6)


def _spread_gated(tiny_ardm):
  """(ungated controller, its spread-gated extension at initialisation)."""
  params = _perturbed_params(tiny_ardm)
  config = dataclasses.replace(CONTROLLER, spread_gate=True)
  extended = extend_params(config, tiny_ardm, params, jax.random.PRNGKey(2))
  return (bind_controller(CONTROLLER, tiny_ardm.periodic, params),
          bind_controller(config, tiny_ardm.periodic, extended))


def _observed(truth):
  rng = np.random.default_rng(3)
  values = np.where(rng.uniform(size=truth.shape) < 0.3, truth, np.nan)
  return Observations.from_arrays(values, noise_std=0.1)


def test_a_spread_gate_starts_as_the_controller_it_extends(tiny_ardm,
                                                          tiny_ks_data,
                                                          tmp_path):
  """extend_params adds the gate at 1: the same ensemble bit for bit; a
  gated controller refuses a one-member ensemble; a warm start from an
  ungated checkpoint is that extension, one of another architecture is
  refused."""
  ungated, gated = _spread_gated(tiny_ardm)
  path = save_controller(tmp_path / "ungated.npz", ungated.params, CONTROLLER,
                         tiny_ardm)
  jax.tree.map(np.testing.assert_array_equal,
               load_warm_start(path, gated.config, tiny_ardm), gated.params)
  with pytest.raises(ValueError, match="another controller architecture"):
    load_warm_start(path, dataclasses.replace(gated.config,
                                              encoding_channels=5), tiny_ardm)
  truth = tiny_ks_data[0, :7]
  run = lambda c, m=3: np.asarray(ensemble_rollout(
      tiny_ardm, truth[:1], 6, jax.random.PRNGKey(4), m, _observed(truth), c,
      2))
  np.testing.assert_array_equal(run(gated), run(ungated))
  with pytest.raises(ValueError, match="at least 2 members"):
    run(gated, 1)
  with pytest.raises(ValueError, match="lacks the parameters"):
    extend_params(gated.config, tiny_ardm, {}, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="parameters this controller lacks"):
    extend_params(CONTROLLER, tiny_ardm, gated.params, jax.random.PRNGKey(0))


def test_the_ensemble_gain_weighs_innovations_by_the_spread():
  """g^e d = s^2 / (s^2 + sigma^2) M (y - x_hat), appended last: zero where
  the ensemble agrees or its spread is undefined, the innovation where the
  spread dwarfs the error std; a controller with it refuses a preview
  without the spread."""
  spread = jnp.asarray([[0.0], [0.3], [100.0], [np.nan]])
  mask = jnp.asarray([[[1.0], [1.0], [1.0], [1.0]],
                      [[0.0], [1.0], [0.0], [1.0]]])
  values = jnp.asarray(np.arange(8.0).reshape(2, 4, 1), jnp.float32)
  error_std = 0.4 * mask  # 0 where nothing is observed, as Preview has it
  denoised = jnp.full((4, 1), 0.5)
  inputs = ControllerInputs(
      state=jnp.zeros((4, 1)), denoised=denoised, sigma=jnp.ones(()),
      conditioning=jnp.zeros((4, 1)),
      preview=Preview(values, mask, jnp.arange(1.0, 3.0), error_std, spread))
  encoding = jnp.zeros((4, 2))
  plain = substep_features(encoding, inputs)
  features = substep_features(encoding, inputs, ensemble_gain=True)
  np.testing.assert_array_equal(features[:, :plain.shape[-1]], plain)
  s = np.nan_to_num(np.asarray(spread), nan=0.0)
  gain = s**2 / (s**2 + 0.4**2)
  expected = gain[None] * np.asarray(mask) * (np.asarray(values) - 0.5)
  np.testing.assert_allclose(features[:, plain.shape[-1]:],
                             np.moveaxis(expected, 0, -2)[..., 0], rtol=1e-6)
  assert features[0, -2] == 0.0 and features[3, -1] == 0.0
  np.testing.assert_allclose(features[2, -2], 2.0 - 0.5, rtol=1e-4)
  assert np.isfinite(np.asarray(features)).all()
  grad = jax.grad(lambda v: substep_features(encoding, inputs._replace(
      preview=inputs.preview._replace(values=v)), ensemble_gain=True).sum())
  assert np.isfinite(np.asarray(grad(values))).all()
  with pytest.raises(ValueError, match="needs the ensemble's spread"):
    substep_features(encoding, inputs._replace(
        preview=inputs.preview._replace(ensemble_spread=None)),
                     ensemble_gain=True)


@pytest.mark.parametrize("gated", [False, True])
def test_an_ensemble_gain_starts_as_the_controller_it_extends(
    gated, tiny_ardm, tiny_ks_data, tmp_path):
  """A warm start (with or without the spread gate) gets zero weights for
  the ensemble gain's head inputs: the same ensemble bit for bit; weights
  on them change it; the gain alone needs the spread (one member and a
  one-member training refused)."""
  base = (_spread_gated(tiny_ardm)[1] if gated else bind_controller(
      CONTROLLER, tiny_ardm.periodic, _perturbed_params(tiny_ardm)))
  config = dataclasses.replace(base.config, ensemble_gain=True)
  path = save_controller(tmp_path / "base.npz", base.params, base.config,
                         tiny_ardm)
  params = load_warm_start(path, config, tiny_ardm)
  added = (params[HEAD_INPUT]["w"].shape[-2]
           - base.params[HEAD_INPUT]["w"].shape[-2])
  assert added == CONTROLLER.horizon * tiny_ardm.state_shape[-1]
  np.testing.assert_array_equal(params[HEAD_INPUT]["w"][..., -added:, :], 0.0)
  truth = tiny_ks_data[0, :7]
  run = lambda c: np.asarray(ensemble_rollout(
      tiny_ardm, tiny_ks_data[:3, :1], 6, jax.random.PRNGKey(4), 3,
      _observed(truth), c, 2))
  with_gain = bind_controller(config, tiny_ardm.periodic, params)
  np.testing.assert_array_equal(run(with_gain), run(base))
  w = np.array(params[HEAD_INPUT]["w"])
  w[..., -added:, :] = np.random.default_rng(0).normal(
      size=w[..., -added:, :].shape)  # not constant: LayerNorm follows
  tuned = dict(params, **{HEAD_INPUT: dict(params[HEAD_INPUT],
                                           w=jnp.asarray(w))})
  assert np.abs(run(bind_controller(config, tiny_ardm.periodic, tuned))
                - run(base)).max() > 1e-4
  with pytest.raises(ValueError, match="at least 2 members"):
    ensemble_rollout(tiny_ardm, truth[:1], 6, jax.random.PRNGKey(4), 1,
                     _observed(truth), with_gain, 2)
  with pytest.raises(ValueError, match="ensembles of at least 2 members"):
    train_controller(tiny_ardm, tiny_ks_data, [], config,
                     ControllerTrainingConfig(objective="observations",
                                              members=1), progress=False)


def test_a_spread_gated_ensemble_is_stepped_together(tiny_ardm, tiny_ks_data):
  """A gate that closes at zero spread leaves an ensemble started from one
  state to its first unguided step, and each member's path depends on the
  other members' (the spread), where an ungated member's does not."""
  ungated, gated = _spread_gated(tiny_ardm)
  gate = "controller/~spread_gate/spread_gate"
  params = dict(gated.params)
  # 2 sigmoid(10 log(s + eps) + 10 log(10)) = 2 s'^2 / (s'^2 + 0.1^2)-like
  w = np.zeros_like(params[gate]["w"])
  w[1, 0, 0] = 10.0  # the centre tap of the local log spread
  params[gate] = {"w": jnp.asarray(w),
                  "b": jnp.full_like(params[gate]["b"], 10.0 * np.log(10.0))}
  gated = bind_controller(gated.config, tiny_ardm.periodic, params)
  truth = tiny_ks_data[0, :7]
  obs = _observed(truth)
  key = jax.random.PRNGKey(4)
  run = lambda c, start: np.asarray(ensemble_rollout(
      tiny_ardm, start, 6, key, 3, obs, c, 2))
  plain = np.asarray(ensemble_rollout(tiny_ardm, truth[:1], 6, key, 3))
  steered = run(ungated, truth[:1])
  left_alone = run(gated, truth[:1])
  assert np.abs(steered[:, 1] - plain[:, 1]).max() > 1e-2
  np.testing.assert_allclose(left_alone[:, 1], plain[:, 1], atol=1e-3)
  starts = np.stack([truth[:1], truth[:1], tiny_ks_data[1, :1]])
  moved = np.stack([truth[:1], truth[:1], tiny_ks_data[2, :1]])
  assert np.abs(run(gated, starts)[0] - run(gated, moved)[0]).max() > 1e-4
  np.testing.assert_array_equal(run(ungated, starts)[0],
                                run(ungated, moved)[0])


def test_the_preview_carries_the_spread_into_each_units(tiny_ardm):
  """Preview.in_units scales the spread like the error stds, and the grid
  adapter hands the controller the spread in its normalised units."""
  mask = jnp.asarray([[[1.0]] * 4, [[0.0]] * 4])
  preview = Preview(3.0 * jnp.ones((2, 4, 1)), mask, jnp.arange(1.0, 3.0),
                    jnp.full((2, 4, 1), 0.4), jnp.full((4, 1), 0.2))
  scaled = preview.in_units(lambda x: (x - 1.0) / 2.0, 2.0)
  np.testing.assert_allclose(np.asarray(scaled.ensemble_spread), 0.1)
  np.testing.assert_allclose(np.asarray(scaled.error_std), 0.2)
  np.testing.assert_array_equal(np.asarray(scaled.values), mask)
  assert preview._replace(ensemble_spread=None).in_units(
      lambda x: x, 2.0).ensemble_spread is None

  seen = []

  class Probe:
    def encode(self, conditioning, preview):
      seen.append(np.asarray(preview.ensemble_spread))
      return conditioning

    def head(self, encoding, inputs):
      return jnp.zeros_like(inputs.state)

  spread = jnp.asarray(np.random.default_rng(0).uniform(size=(32, 1)),
                       jnp.float32)
  frames = jnp.zeros((2, 32, 1))
  tiny_ardm.step(jnp.zeros((1, 32, 1)), jax.random.PRNGKey(0),
                 Preview(frames, frames, jnp.arange(1.0, 3.0), frames,
                         spread), Probe())
  np.testing.assert_allclose(
      seen[0], np.asarray(spread) / np.asarray(tiny_ardm.normalization.std),
      rtol=1e-6)


def test_the_encoder_sees_each_observations_error_std(tiny_ardm):
  """With error_std_channel the control depends on the stated error stds;
  without it (controllers saved before the channel existed) it does not."""
  rng = np.random.default_rng(0)
  field = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  mask = jnp.asarray(rng.uniform(size=(2, 32, 1)) < 0.5, jnp.float32)
  preview = Preview(mask * field(2, 32, 1), mask, jnp.arange(1.0, 3.0),
                    0.1 * mask)
  poor = preview._replace(error_std=2.0 * mask)
  inputs = ControllerInputs(field(32, 1), field(32, 1), jnp.asarray(0.7),
                            field(32, 1), preview)
  for channel in (True, False):
    config = dataclasses.replace(CONTROLLER, error_std_channel=channel)
    params = init_controller(config, tiny_ardm, jax.random.PRNGKey(0))
    params = jax.tree.map(lambda x: x + 0.1, params)
    controller = bind_controller(config, tiny_ardm.periodic, params)
    good_u = controller(inputs)
    poor_u = controller(inputs._replace(preview=poor))
    assert (float(jnp.max(jnp.abs(good_u - poor_u))) > 1e-4) == channel


def test_controller_metadata_without_the_error_std_channel_reads_as_legacy():
  meta = {"config": config_lib.to_dict(CONTROLLER)}
  del meta["config"]["error_std_channel"]
  assert not config_from_metadata("old.npz", meta).error_std_channel
  assert config_from_metadata(
      "new.npz", {"config": config_lib.to_dict(CONTROLLER)}).error_std_channel


def test_head_pointwise_input_mixes_channels_per_point(tiny_ardm):
  """head_pointwise_input: the head's input convolution is 1 x 1 (its block
  stays spatial, the encoder untouched); u = 0 at init; checkpoints saved
  before the option read as False (a full-kernel input convolution)."""
  config = dataclasses.replace(CONTROLLER, head_pointwise_input=True)
  params = init_controller(config, tiny_ardm, jax.random.PRNGKey(0))
  legacy = init_controller(CONTROLLER, tiny_ardm, jax.random.PRNGKey(0))
  head = "controller/~head/head/~_conv/"
  assert params[head + "encode"]["w"].shape[0] == 1
  assert legacy[head + "encode"]["w"].shape[0] == 3
  assert params[head + "encode"]["w"].shape[1:] == legacy[head + "encode"][
      "w"].shape[1:]
  assert params[head + "conv_0a"]["w"].shape[0] == 3
  encoder = "controller/~encode/net/~_conv/encode"
  assert params[encoder]["w"].shape == legacy[encoder]["w"].shape
  rng = np.random.default_rng(1)
  field = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  preview = Preview(field(2, 32, 1), jnp.ones((2, 32, 1)),
                    jnp.arange(1.0, 3.0), 0.1 * jnp.ones((2, 32, 1)))
  inputs = ControllerInputs(field(32, 1), field(32, 1), jnp.asarray(0.7),
                            field(32, 1), preview)
  u = bind_controller(config, tiny_ardm.periodic, params)(inputs)
  assert float(jnp.max(jnp.abs(u))) == 0.0
  meta = {"config": config_lib.to_dict(config)}
  del meta["config"]["head_pointwise_input"]
  assert not config_from_metadata("old.npz", meta).head_pointwise_input


def test_encoder_runs_once_per_forecast_step(tiny_ardm, tiny_ks_data):
  """Tracing one forecast step calls the encoder once, outside the sub-step
  loop, and the head inside it (the scan body and the last sub-step)."""
  controller = bind_controller(CONTROLLER, tiny_ardm.periodic,
                               _perturbed_params(tiny_ardm))
  calls = {"encode": 0, "head": 0}

  class Counting:
    def encode(self, *args):
      calls["encode"] += 1
      return controller.encode(*args)

    def head(self, *args):
      calls["head"] += 1
      return controller.head(*args)

  frames = jnp.asarray(tiny_ks_data[0, 1:3])
  preview = Preview(frames, jnp.ones_like(frames), jnp.arange(1.0, 3.0),
                    0.1 * jnp.ones_like(frames))
  jax.make_jaxpr(lambda h: tiny_ardm.step(h, jax.random.PRNGKey(0), preview,
                                          Counting()))(
                                              jnp.asarray(tiny_ks_data[0, :1]))
  assert calls == {"encode": 1, "head": 2}


def test_cold_start_ensemble_has_one_history_per_member(tiny_ardm,
                                                        tiny_ks_data):
  initial = jnp.asarray(tiny_ks_data[:3, 5:6])  # [M, h, X, C]
  ens = np.asarray(ensemble_rollout(tiny_ardm, initial, 4,
                                    jax.random.PRNGKey(0), 3))
  np.testing.assert_array_equal(ens[:, 0], np.asarray(initial[:, -1]))
  with pytest.raises(ValueError, match="one per member"):
    ensemble_rollout(tiny_ardm, initial, 4, jax.random.PRNGKey(0), 4)


def test_training_keeps_and_returns_the_best_validated_parameters(tmp_path):
  """validate() scores the step count; the best (lowest) is at step 4."""
  loss_fn = lambda p, k: (jnp.sum((p["w"] - 3.0)**2), {})
  scores = {2: 5.0, 4: 1.0, 6: 2.0, 8: 4.0}
  seen = {}

  def validate(params):
    step = len(seen) * 2 + 2
    seen[step] = float(params["w"])
    return {"validation_crps": scores[step]}

  params, history = training_loop.train(
      loss_fn, {"w": jnp.zeros(())}, optax.sgd(0.1), 8,
      jax.random.PRNGKey(0), tmp_path, checkpoint_every=4, log_every=2,
      progress=False, validate=validate, validate_every=2,
      best_metric="validation_crps")
  assert float(params["w"]) == pytest.approx(seen[4])
  assert (tmp_path / "best.npz").exists()
  assert [r["validation_crps"] for r in history if "validation_crps" in r
          ] == [5.0, 1.0, 2.0, 4.0]


def test_the_no_harm_hinge_charges_a_controller_worse_than_the_free_forecast(
    tiny_ardm, tiny_ks_data):
  """no_harm_weight w adds w * mean_l max(0, r_l - r_free_l): zero for the
  u = 0 controller (its rollout is the free one, same noise), positive for
  one that moves the members off a true start."""
  regimes = [ObservationRegime("r", fraction=0.5, noise_std=0.1)]
  key = jax.random.PRNGKey(3)
  scale = np.ones(1, np.float32)
  windows, cold, _ = window_batches(tiny_ks_data, None, 1, 2, 5, 1)(key)
  configs = [ControllerTrainingConfig(batch_size=1, window=2, spinup=2,
                                      cold_fraction=0.0, no_harm_weight=w)
             for w in (0.0, 2.0)]
  zero = init_controller(CONTROLLER, tiny_ardm, jax.random.PRNGKey(0))
  for params, harmful in ((zero, False), (_perturbed_params(tiny_ardm), True)):
    (plain, _), (hinged, parts) = (
        example_cost_fn(tiny_ardm, scale, regimes, CONTROLLER, c)(
            params, windows[0], cold[0], key) for c in configs)
    if harmful:
      assert float(parts["harm"]) > 1e-3
    else:
      assert float(parts["harm"]) == 0.0
    np.testing.assert_allclose(hinged, plain + 2.0 * parts["harm"], rtol=1e-6)
  with pytest.raises(ValueError, match="no_harm_weight needs the 'state'"):
    ControllerTrainingConfig(objective="heldout", no_harm_weight=1.0)
  with pytest.raises(ValueError, match="no_harm_weight"):
    ControllerTrainingConfig(no_harm_weight=-1.0)


def test_ensemble_mean_rmse_matches_the_formula_and_skips_undefined_truth():
  rng = np.random.default_rng(0)
  states = rng.normal(size=(3, 2, 5, 2)).astype(np.float32)  # [M, L, x, C]
  truth = rng.normal(size=(2, 5, 2)).astype(np.float32)
  truth[1, 0, 1] = np.nan
  scale = np.array([1.0, 2.0], np.float32)
  error = (states.mean(0) - truth) / scale
  expected = [np.sqrt(np.nanmean(error[l] ** 2)) for l in range(2)]
  np.testing.assert_allclose(ensemble_mean_rmse(states, truth, scale),
                             expected, rtol=1e-5)


def test_the_no_harm_hinge_is_per_lead():
  """A lead where the controller helps does not pay for one where it harms:
  ensemble-mean errors (0, 2) against free (2, 1) hinge to (0 + 1) / 2,
  where a hinge on the lead mean (1 vs 1.5) would be zero. The members
  scatter around their mean (a per-member RMSE would differ). A free
  forecast that blew up is not charged against at that lead; a controlled
  one that did is scored as zeros."""
  truth = np.zeros((2, 4, 1), np.float32)  # [L, x, C]
  scale = np.ones(1, np.float32)
  mean = np.stack([np.zeros((4, 1)), np.full((4, 1), 2.0)])
  controlled = np.stack([mean + 3.0, mean - 3.0])  # [M = 2, L, x, C]
  free = np.stack([np.full((4, 1), 2.0), np.ones((4, 1))])[None]
  np.testing.assert_allclose(no_harm_hinge(controlled, free, truth, scale),
                             0.5, rtol=1e-5)
  free_blown = free.copy()
  free_blown[0, 0, 0, 0] = np.nan  # lead 0 free, lead 1 still charged
  np.testing.assert_allclose(
      no_harm_hinge(controlled, free_blown, truth, scale), 0.5, rtol=1e-5)
  controlled_blown = controlled.copy()
  controlled_blown[:, 1] = np.nan  # scored as zeros: error 0 at lead 1
  assert float(no_harm_hinge(controlled_blown, free, truth, scale)) == 0.0
