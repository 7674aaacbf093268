"""Checkpoints: round trips, atomic writes, clear errors, resumable training."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gencast_control.core import checkpoint

from gencast_control.training import training_loop
from gencast_control.adapters.grid import load_grid_ardm, save_grid_ardm
from gencast_control.core.checkpoint import CheckpointError
from gencast_control.core.controller import (ControllerConfig, init_controller,
                                             load_controller, save_controller)


def test_ardm_and_controller_round_trip(tmp_path, tiny_ardm):
  path = save_grid_ardm(tmp_path / "ardm.npz", tiny_ardm, {"note": "x"})
  ardm, meta = load_grid_ardm(path)
  assert ardm.fingerprint == tiny_ardm.fingerprint
  assert ardm.config == tiny_ardm.config
  assert meta["note"] == "x"
  config = ControllerConfig(horizon=3)
  params = init_controller(config, ardm, jax.random.PRNGKey(0))
  save_controller(tmp_path / "ctrl.npz", params, config, ardm)
  loaded_config, loaded, _ = load_controller(tmp_path / "ctrl.npz", ardm)
  assert loaded_config == config
  jax.tree.map(np.testing.assert_array_equal, params, loaded)


def test_controller_for_another_model_is_rejected(tmp_path, tiny_ardm):
  config = ControllerConfig()
  params = init_controller(config, tiny_ardm, jax.random.PRNGKey(0))
  save_controller(tmp_path / "ctrl.npz", params, config, tiny_ardm)
  other = type(tiny_ardm)(tiny_ardm.config,
                          jax.tree.map(lambda p: p * 1.01, tiny_ardm.params),
                          tiny_ardm.normalization)
  with pytest.raises(CheckpointError, match="was trained for ARDM"):
    load_controller(tmp_path / "ctrl.npz", other)
  with pytest.raises(CheckpointError, match="holds a 'controller'"):
    load_grid_ardm(tmp_path / "ctrl.npz")


def test_corrupt_and_missing_checkpoints(tmp_path, tiny_ardm):
  with pytest.raises(CheckpointError, match="does not exist"):
    checkpoint.load_checkpoint(tmp_path / "nope.npz")
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip file at all")
  with pytest.raises(CheckpointError, match="corrupt"):
    checkpoint.load_checkpoint(bad)
  good = save_grid_ardm(tmp_path / "ardm.npz", tiny_ardm)
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(good.read_bytes()[:200])
  with pytest.raises(CheckpointError, match="corrupt"):
    load_grid_ardm(truncated)
  plain = tmp_path / "plain.npz"
  np.savez(plain, a=np.zeros(3))
  with pytest.raises(CheckpointError, match="not a gencast-control checkpoint"):
    checkpoint.load_checkpoint(plain)


def test_failed_write_leaves_previous_file_intact(tmp_path):
  path = checkpoint.save_checkpoint(tmp_path / "c.npz",
                                    {"m": {"w": np.ones(2)}}, {"kind": "k"})
  before = path.read_bytes()

  def failing(f):
    f.write(b"partial")
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError):
    checkpoint.atomic_write(path, failing)
  assert path.read_bytes() == before
  assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def _quadratic_problem():
  target = jnp.arange(4.0)

  def loss_fn(params, key):
    noise = 0.1 * jax.random.normal(key, (4,))
    return jnp.sum((params["w"] - target + noise)**2), {}

  return loss_fn, {"w": jnp.zeros(4)}


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
  loss_fn, params = _quadratic_problem()
  opt = optax.adam(0.1)
  key = jax.random.PRNGKey(0)
  full, _ = training_loop.train(loss_fn, params, opt, 30, key,
                                tmp_path / "full", checkpoint_every=10,
                                progress=False)
  # Interrupt after 20 steps (the run ends there, as a killed one would after
  # its last checkpoint), then resume to 30 in the same work dir.
  training_loop.train(loss_fn, params, opt, 20, key, tmp_path / "resumed",
                      checkpoint_every=10, progress=False)
  resumed, history = training_loop.train(loss_fn, params, opt, 30, key,
                                         tmp_path / "resumed",
                                         checkpoint_every=10, progress=False)
  np.testing.assert_allclose(full["w"], resumed["w"], rtol=1e-6)
  # The history holds each logged step once, the earlier session's too.
  assert [r["step"] for r in history] == [10, 20, 30]
  log = (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in log] == [10, 20, 30]


def test_resuming_with_another_configuration_is_rejected(tmp_path):
  loss_fn, params = _quadratic_problem()
  training_loop.train(loss_fn, params, optax.adam(0.1), 5,
                      jax.random.PRNGKey(0), tmp_path, progress=False)
  with pytest.raises(CheckpointError, match="expects"):
    training_loop.train(loss_fn, {"w": jnp.zeros(7)}, optax.adam(0.1), 10,
                        jax.random.PRNGKey(0), tmp_path, progress=False)


def test_a_state_of_another_run_is_refused_naming_what_differs(tmp_path):
  loss_fn, params = _quadratic_problem()
  run = {"config": "a", "data": "d", "optimizer": "o"}
  training_loop.train(loss_fn, params, optax.adam(0.1), 5,
                      jax.random.PRNGKey(0), tmp_path, progress=False,
                      identity=run)
  with pytest.raises(training_loop.RunMismatchError,
                     match=r"other config, training data\).*--fresh"):
    training_loop.train(loss_fn, params, optax.adam(0.1), 10,
                        jax.random.PRNGKey(0), tmp_path, progress=False,
                        identity=dict(run, config="b", data="e"))
  # The same run continues; clear_workdir starts afresh.
  training_loop.train(loss_fn, params, optax.adam(0.1), 10,
                      jax.random.PRNGKey(0), tmp_path, progress=False,
                      identity=run)
  training_loop.clear_workdir(tmp_path)
  _, history = training_loop.train(loss_fn, params, optax.adam(0.1), 10,
                                   jax.random.PRNGKey(0), tmp_path,
                                   progress=False, identity=dict(run, data="e"))
  assert [r["step"] for r in history] == [10]


def test_run_identity_ignores_run_length_but_not_settings():
  from gencast_control.adapters.grid_training import ARDMTrainingConfig
  data = np.zeros((2, 3))
  base = training_loop.run_identity(ARDMTrainingConfig(), data)
  longer = training_loop.run_identity(
      ARDMTrainingConfig(num_steps=9, checkpoint_every=3, log_every=1), data)
  assert base == longer
  other_seed = training_loop.run_identity(ARDMTrainingConfig(seed=7), data)
  other_lr = training_loop.run_identity(ARDMTrainingConfig(
      learning_rate=1e-5), data)
  other_data = training_loop.run_identity(ARDMTrainingConfig(), data + 1)
  assert other_seed["config"] != base["config"]
  assert other_lr["optimizer"] != base["optimizer"]
  assert other_lr["config"] == base["config"]
  assert other_data["data"] != base["data"]


def test_divergence_keeps_the_last_good_state_and_a_saner_rerun_continues(
    tmp_path):
  loss_fn, params = _quadratic_problem()
  key = jax.random.PRNGKey(0)
  run = {"config": "a", "data": "d"}
  # Plain SGD with a huge step size: |w| grows 1e3-fold per step to inf.
  with pytest.raises(training_loop.TrainingDivergedError,
                     match=r"diverged at step (\d+).*last good state"):
    training_loop.train(loss_fn, params, optax.sgd(1e3), 200, key, tmp_path,
                        checkpoint_every=1000, progress=False,
                        identity=dict(run, optimizer="sgd 1e3"))
  state, meta = checkpoint.load_training_state(
      tmp_path / "state.npz",
      training_loop.initial_state(params, optax.sgd(1.0), key)[0])
  stopped = int(state["step"])  # the last state with a finite loss
  assert meta["diverged_at_step"] in (stopped + 1, stopped + 2)
  assert np.isfinite(state["params"]["w"]).all()
  # Another seed is another run even after divergence ...
  with pytest.raises(training_loop.RunMismatchError, match="config"):
    training_loop.train(loss_fn, params, optax.sgd(1e-2), 200, key, tmp_path,
                        progress=False,
                        identity=dict(run, config="b", optimizer="sgd 1e-2"))
  # ... but a saner step size continues from the last good state.
  final, history = training_loop.train(
      loss_fn, params, optax.sgd(1e-3), stopped + 20, key, tmp_path,
      progress=False, identity=dict(run, optimizer="sgd 1e-3"))
  assert np.isfinite(final["w"]).all()
  assert any("resumed after divergence" in r.get("event", "")
             for r in history)


def test_non_finite_parameters_with_a_finite_loss_are_not_applied(tmp_path):
  def loss_fn(params, key):  # finite loss, infinite gradient at w = 0
    return jnp.sum(jnp.sqrt(jnp.abs(params["w"]))), {}

  with pytest.raises(training_loop.TrainingDivergedError,
                     match="step 1: non-finite gradient and parameters"):
    training_loop.train(loss_fn, {"w": jnp.zeros(2)}, optax.sgd(0.1), 5,
                        jax.random.PRNGKey(0), tmp_path, progress=False)
  assert not (tmp_path / "state.npz").exists() or np.isfinite(
      np.load(tmp_path / "state.npz")["leaf/0"]).all()


def test_stale_temporary_files_of_killed_writes_are_removed(tmp_path):
  loss_fn, params = _quadratic_problem()
  stale = tmp_path / ".state.npz.abc123.tmp"
  stale.write_bytes(b"half a checkpoint")
  training_loop.train(loss_fn, params, optax.adam(0.1), 2,
                      jax.random.PRNGKey(0), tmp_path, progress=False)
  assert not stale.exists()
