"""GenCast adapter on a tiny random GenCast (10 deg 19 x 36 grid with poles).

Runs where DeepMind's GenCast code is installed, in either layout
(graphcast 0.2 or weathernext); skipped otherwise.
"""

import dataclasses
import time

import numpy as np
import pytest

pytest.importorskip(
    "gencast_control.adapters.gencast.predictor",
    reason="DeepMind's GenCast code is not installed (pip install"
    " 'gencast-control[gencast]' or '[gencast-next]'); the GenCast adapter"
    " tests need it", exc_type=ImportError)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import xarray as xr  # noqa: E402

from gencast_control.adapters import gencast as g  # noqa: E402
from gencast_control.adapters.gencast import assets as gencast_assets  # noqa: E402
from gencast_control.adapters.gencast import tiny  # noqa: E402
from gencast_control.core.checkpoint import CheckpointError  # noqa: E402
from gencast_control.core.assimilation import (  # noqa: E402
    ensemble_rollout, rollout)
from gencast_control.core.controller import (  # noqa: E402
    HEAD_INPUT, ControllerConfig, bind_controller, extend_params)
from gencast_control.baselines.guidance import (  # noqa: E402
    DPSOptions, assimilate_baseline, dps_rule)
from gencast_control.training.controller_training import (  # noqa: E402
    channel_scale, controller_loss_fn, observe_defined, window_batches)
from gencast_control.core.networks import ConvNetConfig  # noqa: E402
from gencast_control.core.observations import Preview  # noqa: E402
from gencast_control.core.regimes import ObservationRegime  # noqa: E402

pytestmark = pytest.mark.gencast

CONTROLLER = ControllerConfig(horizon=1, network=ConvNetConfig(
    width=8, num_blocks=1, kernel_size=3, dilations=(1,), embedding_size=8))


def _equal(a: xr.Dataset, b: xr.Dataset) -> bool:
  return all(np.array_equal(np.asarray(a[v].values),
                            np.asarray(b[v].transpose(*a[v].dims).values),
                            equal_nan=True) for v in a.data_vars)


def _max_diff(a: xr.Dataset, b: xr.Dataset) -> float:
  return max(float(np.nanmax(np.abs(np.asarray(a[v].values)
                                    - np.asarray(b[v].values))))
             for v in a.data_vars)


@pytest.fixture(scope="module")
def setup():
  model, example = tiny.offline_assets(num_steps=2, seed=0, example_seed=1)
  inputs, targets, forcings = tiny.split_example(model.task_config, example,
                                                 2)
  layout = g.ChannelLayout.from_template(targets)
  ardm = g.GenCastARDM(model, inputs, targets, forcings)
  params = g.init_controller(CONTROLLER, ardm, jax.random.PRNGKey(1))
  upstream_fn = g.upstream_forward_transform(model)
  upstream_step = jax.jit(
      lambda p, rng, inputs, targets_template, forcings: upstream_fn.apply(
          p, {}, rng, inputs, targets_template, forcings)[0])
  return dict(model=model, example=example, inputs=inputs, targets=targets,
              forcings=forcings, layout=layout, params=params, ardm=ardm,
              upstream_step=upstream_step,
              plain=g.GenCastPredictor(model),
              controlled=g.GenCastPredictor(model, CONTROLLER, params))


def _one_step(s):
  return (s["inputs"], s["targets"].isel(time=[0]) * np.nan,
          s["forcings"].isel(time=[0]))


def _preview(s, fraction=0.4, seed=0):
  """Observations of the first target time on a random 40% of points."""
  truth = np.asarray(s["layout"].stack(s["targets"].isel(time=[0])))[0]
  rng = np.random.default_rng(seed)
  mask = (rng.random(truth.shape[:2]) < fraction)[..., None] * np.isfinite(
      truth)
  return Preview(values=jnp.asarray(np.where(mask, truth, 0.0))[None],
                 mask=jnp.asarray(mask, jnp.float32)[None],
                 offsets=jnp.ones(1),
                 error_std=0.1 * jnp.asarray(mask, jnp.float32)[None])


def test_zero_control_reproduces_upstream_bit_for_bit(setup):
  s = setup
  inputs, template, forcings = _one_step(s)
  rng = jax.random.PRNGKey(7)
  reference = s["upstream_step"](s["model"].params, rng, inputs, template,
                                 forcings)
  assert _equal(reference, s["plain"](rng, inputs, template, forcings))
  controlled = s["controlled"](rng, inputs, template, forcings, _preview(s))
  assert _equal(reference, controlled), _max_diff(reference, controlled)
  other_key = s["plain"](jax.random.PRNGKey(8), inputs, template, forcings)
  assert not _equal(reference, other_key)


def test_controlled_step_moves_the_sample(setup):
  s = setup
  inputs, template, forcings = _one_step(s)
  rng = jax.random.PRNGKey(7)
  plain = s["plain"](rng, inputs, template, forcings)
  bumped = jax.tree.map(lambda p: p + 0.05 * jnp.sign(p + 1e-3), s["params"])
  predictor = s["controlled"].with_controller_params(bumped)
  prediction, energy = predictor.controlled_step(rng, inputs, template,
                                                 forcings, _preview(s))
  assert float(energy) > 0
  assert _max_diff(plain, prediction) > 0
  for v in plain.data_vars:  # finite wherever GenCast itself is
    assert np.array_equal(np.isnan(plain[v].values),
                          np.isnan(prediction[v].values))


def test_rollouts_match_upstream_rollout_utilities(setup):
  s = setup
  gc = g.upstream.upstream()
  template = s["targets"] * np.nan
  rng = jax.random.PRNGKey(3)
  upstream_fn = lambda **kw: s["upstream_step"](s["model"].params, **kw)
  reference = gc.rollout.chunked_prediction(
      upstream_fn, rng=jax.random.fold_in(rng, 0), inputs=s["inputs"],
      targets_template=template, forcings=s["forcings"])
  # Our predictor as upstream's predictor_fn:
  ours = gc.rollout.chunked_prediction(
      s["plain"], rng=jax.random.fold_in(rng, 0), inputs=s["inputs"],
      targets_template=template, forcings=s["forcings"])
  assert _equal(reference, ours)
  # Rollouts over many steps go through GenCastARDM and the project's one
  # rollout: tests/test_gencast_api.py.


def test_ensemble_members_use_folded_keys(setup):
  s = setup
  inputs, template, forcings = _one_step(s)
  rng = jax.random.PRNGKey(11)
  ensemble = s["plain"].sample(rng, inputs, template, forcings, num_samples=2)
  assert list(ensemble.coords["sample"].values) == [0, 1]
  member = s["plain"](jax.random.fold_in(rng, 1), inputs, template, forcings)
  assert _equal(member, ensemble.isel(sample=1, drop=True))


def test_channel_layout_round_trip_and_denormalisation(setup):
  s = setup
  layout, targets = s["layout"], s["targets"].isel(time=[0])
  assert layout.channel_names == (
      "2m_temperature", "geopotential@500", "geopotential@850",
      "sea_surface_temperature", "temperature@500", "temperature@850",
      "total_precipitation_12hr")
  stacked = np.asarray(layout.stack(targets))
  assert stacked.shape == (1, 19, 36, 7)
  np.testing.assert_array_equal(
      stacked[..., 2], targets["geopotential"].sel(level=850).values[:, 0])
  back = layout.unstack(jnp.asarray(stacked), targets)
  assert _equal(targets, back)
  # denoised_to_state agrees with upstream's InputsAndResiduals unnormalising.
  stats = s["model"].stats
  channel_stats = g.ChannelStats.create(layout, stats,
                                        s["model"].task_config.input_variables)
  gc = g.upstream.upstream()
  d = targets.copy(data={v: np.random.default_rng(0).normal(
      size=targets[v].shape).astype(np.float32) for v in targets.data_vars})
  inputs = s["inputs"].fillna(0.0)
  physical = xr.Dataset({
      v: (d[v] * stats.diffs_stddev_by_level[v]
          + inputs[v].isel(time=-1)) if v in inputs else
      gc.normalization.unnormalize(d[v], stats.stddev_by_level,
                                   stats.mean_by_level)
      for v in d.data_vars})
  expected = channel_stats.normalize(np.asarray(layout.stack(physical)))
  norm_last = g.last_input_frame(
      gc.normalization.normalize(inputs, stats.stddev_by_level,
                                 stats.mean_by_level), layout, targets)
  got = channel_stats.denoised_to_state(jnp.asarray(layout.stack(d)),
                                        norm_last)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_gencast_as_frozen_ardm_samples_like_the_predictor(setup):
  s = setup
  ardm = s["ardm"]
  assert ardm.state_shape == (19, 36, 7) and ardm.history_length == 2
  states, context = ardm.trajectories(s["inputs"], s["targets"],
                                      s["forcings"])
  assert states.shape == (1, 4, 19, 36, 7)
  assert set(context) == set(s["model"].task_config.forcing_variables)
  # Precipitation is a target only: unknown (NaN) at the input times.
  precipitation = s["layout"].channel_names.index("total_precipitation_12hr")
  assert np.isnan(states[0, :2, ..., precipitation]).all()
  assert np.isfinite(states[0, 2:, ..., precipitation]).all()
  h = ardm.history_length
  first = lambda c: jax.tree.map(lambda x: jnp.asarray(x[0, :h + 1]), c)
  inputs, template, forcings = _one_step(s)
  preview = _preview(s)
  bumped = jax.tree.map(lambda p: p + 0.05 * jnp.sign(p + 1e-3), s["params"])
  controller = bind_controller(CONTROLLER, ardm.periodic, bumped)
  rng = jax.random.PRNGKey(7)
  for control in (None, controller):
    step = jax.jit(lambda hist, ctx: ardm.step(hist, rng, preview, control,
                                               context=ctx))
    got, energy = step(jnp.asarray(states[0, :h]), first(context))
    predictor = (s["plain"] if control is None else
                 s["controlled"].with_controller_params(bumped))
    reference = predictor(rng, inputs, template, forcings, preview)
    expected = np.asarray(s["layout"].stack(reference))[0]
    # The same program up to XLA's fusion of differently built inputs: equal
    # to float32 rounding (~1e-7 of each channel's std), NaN in the same
    # places.
    np.testing.assert_allclose(np.asarray(got) / ardm.channel_std,
                               expected / ardm.channel_std, rtol=0, atol=1e-5)
    assert (float(energy) > 0) == (control is not None)
  # The project's rollout runs GenCast: step 0 is the step above.
  key = jax.random.PRNGKey(2)
  rolled, _ = jax.jit(lambda hist, ctx: rollout(ardm, hist, 2, key,
                                                context=ctx))(
      jnp.asarray(states[0, :h]), jax.tree.map(lambda x: jnp.asarray(x[0]),
                                               context))
  one = ardm.step(jnp.asarray(states[0, :h]), jax.random.fold_in(key, 0),
                  context=first(context))[0]
  assert rolled.shape == (3, 19, 36, 7)
  np.testing.assert_allclose(np.asarray(rolled[1]) / ardm.channel_std,
                             np.asarray(one) / ardm.channel_std, rtol=0,
                             atol=1e-5)
  with pytest.raises(ValueError, match="needs its forcings as context"):
    ardm.step(jnp.asarray(states[0, :h]), key)


def test_guidance_rules_run_on_gencast(setup):
  """The DPS and RePaint baselines on GenCast through the protocol's
  `guidance` hook: the same rules and code as on the PDE models."""
  s = setup
  ardm = s["ardm"]
  states, context = ardm.trajectories(s["inputs"], s["targets"],
                                      s["forcings"])
  h = ardm.history_length
  regime = ardm.in_physical_units([ObservationRegime(
      "half", fraction=0.5, fixed=True, noise_std=0.05)])[0]
  truth = jnp.asarray(states[0, h - 1:])  # times 0..2
  observations = observe_defined(regime, jax.random.PRNGKey(4), truth)
  history = jnp.asarray(states[0, :h])
  ctx = jax.tree.map(lambda x: jnp.asarray(x[0]), context)
  key = jax.random.PRNGKey(5)
  run = lambda method, **o: np.asarray(assimilate_baseline(
      method, ardm, history, observations, 1, key, 1, context=ctx, **o))[0, 1]
  free = run("dps", zeta=0.0)  # u = 0: GenCast's own sample
  plain = ardm.step(history, jax.random.fold_in(jax.random.fold_in(key, 0),
                                                 0),
                    context=jax.tree.map(lambda x: x[:h + 1], ctx))[0]
  np.testing.assert_allclose(free / ardm.channel_std,
                             np.asarray(plain) / ardm.channel_std, rtol=0,
                             atol=1e-4)
  mask = np.asarray(observations.mask[1]) > 0
  y = np.asarray(observations.values[1])

  def misfit(x):  # observed entries, in channel stds
    return float(np.sqrt(np.mean(((x - y) / ardm.channel_std)[mask]**2)))

  for method in ("dps", "repaint"):
    guided = run(method)
    assert np.isfinite(guided[np.isfinite(free)]).all()
    assert misfit(guided) < 0.8 * misfit(free), (method, misfit(guided),
                                                 misfit(free))
  # the unguided forecast takes the per-step context too, checked
  unguided = np.asarray(assimilate_baseline(
      "unguided", ardm, history, observations, 1, key, 1,
      context=jax.tree.map(lambda x: x[:h + 1], ctx)))[0, 1]
  assert np.isfinite(unguided[np.isfinite(free)]).all()
  with pytest.raises(ValueError, match="must cover"):
    assimilate_baseline("unguided", ardm, history, observations, 1, key, 1,
                        context=ctx)


def test_predictor_runs_one_guided_step(setup):
  """GenCastPredictor(guidance=rule): a DPS step with zeta = 0 is GenCast's
  own sample (same key); a DPS step moves toward the observations; a rule
  holds one step's observations, so guided rollouts are refused."""
  s = setup
  inputs, template, forcings = _one_step(s)
  truth = np.asarray(s["layout"].stack(s["targets"].isel(time=[0])))[0]
  mask = (np.random.default_rng(3).random(truth.shape) < 0.5) & np.isfinite(
      truth)
  y = jnp.asarray(np.where(mask, truth, 0.0), jnp.float32)
  mask = jnp.asarray(mask, jnp.float32)
  std = jnp.asarray(0.05 * s["ardm"].channel_std, jnp.float32)
  rng = jax.random.PRNGKey(7)
  plain = s["plain"](rng, inputs, template, forcings)
  guided = lambda options: g.GenCastPredictor(
      s["model"], guidance=dps_rule(options, y, mask, std, None))(
          rng, inputs, template, forcings)
  assert _max_diff(guided(DPSOptions(zeta=0.0)), plain) < 1e-4

  def misfit(prediction):
    x = np.asarray(s["layout"].stack(prediction))[0]
    return float(np.sqrt(np.mean((((x - np.asarray(y)) / s["ardm"].channel_std)
                                  [np.asarray(mask) > 0])**2)))

  assert misfit(guided(DPSOptions())) < 0.8 * misfit(plain)
  with pytest.raises(ValueError, match="controller or a guidance rule"):
    g.GenCastPredictor(s["model"], CONTROLLER, s["params"],
                       guidance=dps_rule(DPSOptions(), y, mask, std, None))


def test_state_objective_training_lowers_the_crps_and_keeps_gencast_frozen(
    setup):
  """The project's one training path (controller_training) on GenCast."""
  s = setup
  # Fewer noise levels: the same graph, a quicker run.
  model = dataclasses.replace(s["model"], sampler_config=dataclasses.replace(
      s["model"].sampler_config, num_noise_levels=4))
  frozen = jax.tree.map(np.array, model.params)
  ardm = g.GenCastARDM(model, s["inputs"], s["targets"], s["forcings"])
  states, context = ardm.trajectories(s["inputs"], s["targets"],
                                      s["forcings"])
  regimes = ardm.in_physical_units(
      [ObservationRegime("half", fraction=0.5, fixed=True, noise_std=0.1)])
  np.testing.assert_allclose(regimes[0].noise_std, 0.1 * ardm.channel_std,
                             rtol=1e-6)
  training = g.ControllerTrainingConfig(
      objective="state", members=2, window=1, spinup=0, cold_fraction=0.0,
      batch_size=1, num_steps=10, learning_rate=1e-2, control_cost=1e-4,
      log_every=5)
  h = ardm.history_length
  loss_fn = controller_loss_fn(
      ardm, channel_scale(states), regimes, CONTROLLER,
      dataclasses.replace(training, control_cost=0.0))
  batches = window_batches(states, context, 1, 2, h + 1, h)
  score = jax.jit(lambda p, k, b: loss_fn(p, k, b)[1]["score"])
  keys = [jax.random.PRNGKey(k) for k in range(2)]
  before = np.mean([float(score(s["params"], k, batches(k))) for k in keys])
  params, history = g.train_controller(ardm, states, regimes, CONTROLLER,
                                       training, progress=False,
                                       params=s["params"], context=context)
  after = np.mean([float(score(params, k, batches(k))) for k in keys])
  assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
  assert after < 0.9 * before, (before, after)
  jax.tree.map(np.testing.assert_array_equal, frozen, model.params)


def test_an_ensemble_aware_controller_runs_on_gencast(setup):
  """The spread gate and the ensemble gain through GenCast's adapter and
  the one training path: added (gate 1, gain inputs zero-weighted) they
  are the controller they extend, the gate closed is the unguided forecast,
  and the training loss (with the relative cost and the no-harm hinge,
  whose free rollout runs GenCast too) has a finite gradient in the gate
  and in the gain's inputs (GenCast's fields undefined at some points)."""
  s = setup
  ardm = s["ardm"]
  h = ardm.history_length
  states, context = ardm.trajectories(s["inputs"], s["targets"],
                                      s["forcings"])
  truth = jnp.asarray(states[0, h - 1:h + 1])
  observations = observe_defined(
      ardm.in_physical_units([ObservationRegime("half", fraction=0.5,
                                                noise_std=0.1)]),
      jax.random.PRNGKey(3), truth)
  bumped = jax.tree.map(lambda p: p + 0.05 * jnp.sign(p + 1e-3), s["params"])
  gated_config = dataclasses.replace(CONTROLLER, spread_gate=True,
                                     ensemble_gain=True)
  extended = extend_params(gated_config, ardm, bumped, jax.random.PRNGKey(0))
  start = jax.random.normal(jax.random.PRNGKey(4), (2,) + states.shape[2:])
  histories = jnp.asarray(states[0, :h]) + 0.01 * start[:, None] * jnp.asarray(
      ardm.channel_std)
  run = lambda c, config=CONTROLLER: np.asarray(ensemble_rollout(
      ardm, histories, 1, jax.random.PRNGKey(5), 2, observations,
      None if c is None else bind_controller(config, ardm.periodic, c), 1,
      context=jax.tree.map(lambda x: jnp.asarray(x[0, :h + 1]), context)))
  plain, steered = run(None), run(bumped)
  std = np.asarray(ardm.channel_std)
  np.testing.assert_allclose(run(extended, gated_config) / std, steered / std,
                             rtol=0, atol=1e-5)
  closed = dict(extended)
  gate = "controller/~spread_gate/spread_gate"
  closed[gate] = dict(closed[gate], b=jnp.full_like(closed[gate]["b"], -30.0))
  assert np.nanmax(np.abs(steered - plain) / std) > 1e-3
  np.testing.assert_allclose(run(closed, gated_config) / std, plain / std,
                             rtol=0, atol=1e-5)
  loss_fn = controller_loss_fn(
      ardm, channel_scale(states), [ObservationRegime("half", fraction=0.5,
                                                      noise_std=0.1)],
      gated_config, g.ControllerTrainingConfig(
          objective="state", members=2, window=1, spinup=0,
          cold_fraction=1.0, batch_size=1, relative_cost=True,
          no_harm_weight=1.0))  # cold: members apart, so the spread is not 0
  batch = window_batches(states, context, 1, 2, h + 1, h)(
      jax.random.PRNGKey(6))
  grads = jax.grad(lambda p: loss_fn(p, jax.random.PRNGKey(6), batch)[0])(
      extended)
  assert float(jnp.abs(grads[gate]["w"]).sum()) > 0
  head_input = grads[HEAD_INPUT]["w"]
  added = gated_config.horizon * ardm.state_shape[-1]
  assert np.isfinite(np.asarray(head_input)).all()
  assert float(jnp.abs(head_input[..., -added:, :]).sum()) > 0


def test_controller_checkpoint_round_trip(setup, tmp_path):
  s = setup
  params = jax.tree.map(lambda p: p + 0.01, s["params"])
  path = g.save_controller(tmp_path / "ctrl.npz", params, CONTROLLER,
                           s["ardm"], {"note": "tiny"})
  config, loaded, meta = g.load_controller(path, s["ardm"])
  assert config == CONTROLLER and meta["note"] == "tiny"
  jax.tree.map(np.testing.assert_array_equal, params, loaded)
  inputs, template, forcings = _one_step(s)
  rng = jax.random.PRNGKey(5)
  assert config == s["controlled"].controller_config
  a = s["controlled"].with_controller_params(loaded)(
      rng, inputs, template, forcings, _preview(s))
  b = s["controlled"].with_controller_params(params)(
      rng, inputs, template, forcings, _preview(s))
  assert _equal(a, b)
  assert not _equal(a, s["controlled"](rng, inputs, template, forcings,
                                       _preview(s)))
  other = dataclasses.replace(s["model"], params=jax.tree.map(
      lambda p: p * 1.01, s["model"].params))
  with pytest.raises(CheckpointError, match="was trained for ARDM gencast-"):
    g.load_controller(path, g.GenCastARDM(other, s["inputs"], s["targets"],
                                          s["forcings"]))


def test_clear_errors_for_wrong_inputs(setup):
  s = setup
  inputs, template, forcings = _one_step(s)
  rng = jax.random.PRNGKey(0)
  plain = s["plain"]
  with pytest.raises(ValueError, match=r"inputs lack the variables \['temp"):
    plain(rng, inputs.drop_vars("temperature"), template, forcings)
  with pytest.raises(ValueError, match="targets_template lack the variables"):
    plain(rng, inputs, template.drop_vars("total_precipitation_12hr"),
          forcings)
  with pytest.raises(ValueError, match="latitude is descending"):
    plain(rng, inputs.isel(lat=slice(None, None, -1)),
          template.isel(lat=slice(None, None, -1)), forcings)
  with pytest.raises(ValueError, match="equiangular latitude grid, with poles"):
    plain(rng, inputs.isel(lat=slice(1, -1)), template.isel(lat=slice(1, -1)),
          forcings)
  with pytest.raises(ValueError, match="longitudes"):
    plain(rng, inputs.isel(lon=slice(0, 30)), template.isel(lon=slice(0, 30)),
          forcings.isel(lon=slice(0, 30)))
  model_1deg = dataclasses.replace(s["model"], grid_shape=(181, 360))
  with pytest.raises(ValueError, match="trained on 181 x 360"):
    g.GenCastPredictor(model_1deg)(rng, inputs, template, forcings)
  with pytest.raises(ValueError, match="pressure levels"):
    plain(rng, inputs.assign_coords(level=[300, 850]),
          template.assign_coords(level=[300, 850]), forcings)
  with pytest.raises(ValueError, match="inputs have 1 times"):
    plain(rng, inputs.isel(time=[1]), template, forcings)
  bad = inputs.copy(deep=True)
  bad["2m_temperature"][0, 0, 3, 3] = np.nan
  with pytest.raises(ValueError, match="'2m_temperature' contains NaN"):
    plain(rng, bad, template, forcings)
  with pytest.raises(ValueError, match="forcings are required"):
    plain(rng, inputs, template, None)
  with pytest.raises(ValueError, match="pass the preview"):
    s["controlled"](rng, inputs, template, forcings)
  wrong = _preview(s)
  wrong = Preview(wrong.values[..., :3], wrong.mask[..., :3], wrong.offsets,
                  wrong.error_std[..., :3])
  with pytest.raises(ValueError, match="channel layout needs"):
    s["controlled"](rng, inputs, template, forcings, wrong)
  with pytest.raises(ValueError, match="both controller_config"):
    g.GenCastPredictor(s["model"], CONTROLLER, None)


def test_checkpoint_and_stats_files_in_deepmind_format(setup, tmp_path):
  s = setup
  model, gc = s["model"], g.upstream.upstream()
  ckpt = gc.gencast.CheckPoint(
      params=jax.tree.map(np.asarray, model.params), description="tiny",
      license="CC BY-NC-SA 4.0", task_config=model.task_config,
      denoiser_architecture_config=dataclasses.replace(
          model.denoiser_architecture_config,
          sparse_transformer_config=dataclasses.replace(
              model.denoiser_architecture_config.sparse_transformer_config,
              attention_type="splash_mha", mask_type="lazy")),
      sampler_config=model.sampler_config, noise_config=model.noise_config,
      noise_encoder_config=model.noise_encoder_config)
  path = tmp_path / "GenCast 1p0deg Mini <2019.npz"
  with open(path, "wb") as f:
    gc.checkpoint.dump(f, ckpt)
  stats_dir = tmp_path / "stats"
  stats_dir.mkdir()
  for name in ("diffs_stddev_by_level", "mean_by_level", "stddev_by_level",
               "min_by_level"):
    getattr(model.stats, name).to_netcdf(stats_dir / f"{name}.nc")
  loaded = g.load_model(path, stats_dir, backend="cpu")
  assert loaded.attention_type == "triblockdiag_mha"
  assert (loaded.denoiser_architecture_config.sparse_transformer_config
          .mask_type) == "full"
  assert loaded.grid_shape == (181, 360)
  jax.tree.map(np.testing.assert_array_equal, model.params, loaded.params)
  assert g.load_model(path, stats_dir, backend="tpu").attention_type == (
      "splash_mha")
  xr.testing.assert_equal(loaded.stats.mean_by_level, model.stats.mean_by_level)
  assert loaded.task_config == model.task_config
  assert loaded.sampler_config == model.sampler_config
  assert loaded.noise_encoder_config == model.noise_encoder_config
  with pytest.raises(g.AssetUnavailableError, match="do not exist"):
    g.load_stats(tmp_path / "nowhere")
  (stats_dir / "bad.npz").write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match="not a GenCast checkpoint"):
    g.load_checkpoint(stats_dir / "bad.npz")
  with pytest.raises(ValueError, match="lack variables"):
    g.GenCastModel(**{**{f.name: getattr(model, f.name) for f in
                         dataclasses.fields(model)},
                      "stats": dataclasses.replace(
                          model.stats, mean_by_level=model.stats
                          .mean_by_level.drop_vars("temperature"))})


def test_example_dataset_loads_locally_and_from_the_registry(
    setup, tmp_path, monkeypatch):
  example = setup["example"]
  path = tmp_path / "example.nc"
  example.to_netcdf(path)
  loaded = g.load_example(path)
  xr.testing.assert_allclose(loaded, example)
  # A registered name reads its gs:// path through the guarded reader.
  requested = []

  def fake_read(source, timeout_s):
    requested.append((source, timeout_s))
    return path.read_bytes()

  monkeypatch.setattr(gencast_assets, "read_asset", fake_read)
  name = "era5_1p0deg_2019-03-29_30steps"
  from_bucket = g.load_example(name, timeout_s=5)
  assert requested == [(
      "gs://dm_graphcast/gencast/dataset/"
      "source-era5_date-2019-03-29_res-1.0_levels-13_steps-30.nc", 5)]
  xr.testing.assert_allclose(from_bucket, example)
  inputs, targets, _ = tiny.split_example(setup["model"].task_config,
                                          from_bucket, 2)
  assert targets.sizes["time"] == 2 and inputs.sizes["time"] == 2
  with pytest.raises(g.AssetUnavailableError, match="does not exist"):
    g.load_example(tmp_path / "missing.nc")
  (tmp_path / "bad.nc").write_bytes(b"not netcdf")
  with pytest.raises(ValueError, match="not a NetCDF GenCast example"):
    g.load_example(tmp_path / "bad.nc")


def test_bucket_reads_time_out_with_a_clear_error(monkeypatch):
  class HangingFileSystem:
    def __init__(self, **kwargs):
      assert kwargs["token"] == "anon"

    def open(self, path, mode):
      time.sleep(5)

  import gcsfs
  monkeypatch.setattr(gcsfs, "GCSFileSystem", HangingFileSystem)
  start = time.perf_counter()
  with pytest.raises(gencast_assets.AssetUnavailableError, match="timed out"):
    g.load_stats("bucket", timeout_s=0.3)
  assert time.perf_counter() - start < 3

  class OfflineFileSystem(HangingFileSystem):
    def open(self, path, mode):
      raise OSError("Name or service not known")

  monkeypatch.setattr(gcsfs, "GCSFileSystem", OfflineFileSystem)
  with pytest.raises(gencast_assets.AssetUnavailableError, match="offline"):
    g.load_checkpoint("1p0deg_mini", timeout_s=5)
  with pytest.raises(ValueError, match="timeout_s must be positive"):
    g.load_stats("bucket", timeout_s=0)


def test_train_controller_job_on_the_tiny_gencast_resumes_with_tensorboard(
    tmp_path, monkeypatch, capsys):
  """`gencast-control train-controller --config gencast_1deg_train --tiny`:
  interrupted after its first step, the same command continues from the
  saved state; log.jsonl and the TensorBoard events hold steps 1 and 2."""
  import importlib.util
  import json
  from gencast_control import cli
  from gencast_control.core.checkpoint import load_checkpoint
  from gencast_control.training import sharding
  from tests.test_tensorboard import read_scalars
  out = tmp_path / "run" / "controller.npz"
  argv = ["train-controller", "--config", "gencast_1deg_train", "--tiny",
          "--out", str(out)] + [
              a for s in ("controller_training.num_steps=2",
                          "controller_training.batch_size=2",
                          "controller_training.checkpoint_every=1",
                          "controller_training.log_every=1",
                          "num_examples=4", "controller.horizon=1",
                          "controller.network.width=8",
                          "controller.network.num_blocks=1",
                          "controller.network.dilations=(1,)",
                          "controller.network.embedding_size=8")
              for a in ("--set", s)]
  calls = []
  real_shard_batch = sharding.shard_batch

  def killed_at_step_2(batch, mesh):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real_shard_batch(batch, mesh)

  monkeypatch.setattr(sharding, "shard_batch", killed_at_step_2)
  assert cli.main(argv) == 130 and not out.exists()
  monkeypatch.setattr(sharding, "shard_batch", real_shard_batch)
  assert cli.main(argv) == 0
  assert f"wrote {out}" in capsys.readouterr().out
  work = out.with_suffix(".work")
  log = [json.loads(line) for line in (work / "log.jsonl").read_text()
         .splitlines()]
  assert [r["step"] for r in log if "loss" in r] == [1, 2]
  _, meta = load_checkpoint(out)
  assert meta["tiny"] is True and meta["final_loss"] == log[-1]["loss"]
  assert meta["job"]["controller_training"]["num_steps"] == 2
  if importlib.util.find_spec("tensorboardX") is not None:
    scalars = read_scalars(work)
    assert scalars["loss"] == pytest.approx(
        {r["step"]: r["loss"] for r in log if "loss" in r}, rel=1e-6)
