"""Training examples streamed from a store (data/example_stream.py).

ExampleStream on a small WeatherBench2-shaped zarr store (no network): two
forced processes read disjoint shards, a key always gives the same batch,
prefetch reads in the background; controller training takes a stream
(StreamedWindows) instead of arrays; GenCast's cloud job streams its
examples from the store step by step (needs DeepMind's code, skipped
otherwise).
"""

import dataclasses
import threading

import jax
import numpy as np
import pytest
import xarray as xr

from gencast_control.core.controller import ControllerConfig
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.data import era5_batches
from gencast_control.data.era5_store import open_store
from gencast_control.data.example_stream import ExampleStream
from gencast_control.training import sharding, training_loop
from gencast_control.training.controller_training import (
    ControllerTrainingConfig, StreamedWindows, train_controller)
from tests.toy_ardm import ToyARDM
from tests.wb2_store import write_wb2_store

STREAM_THREAD = "example-stream"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  path = tmp_path_factory.mktemp("wb2") / "era5.zarr"
  write_wb2_store(path, days=3)  # 6-hourly, 2020-01-01T00 .. 03T18
  return open_store(str(path))


class Reader:
  """read(times) -> GenCast batch of those initialisation times; records
  (thread name, times) of every call."""

  def __init__(self, store):
    self.store, self.calls = store, []

  def __call__(self, times):
    self.calls.append((threading.current_thread().name, np.asarray(times)))
    return era5_batches.to_gencast_batch(
        self.store, times, levels=(500, 850), resolution_step=4)


def init_times(store):
  """Times t0 with t0 - 12 h and t0 + 12 h in the store."""
  return store["time"].values[2:-2]


def same(a, b) -> bool:
  return all(x.identical(y) for x, y in zip(a, b))


def test_two_processes_read_disjoint_shards_and_a_key_gives_one_batch(store):
  times = init_times(store)
  hosts = [ExampleStream(Reader(store), times, 4, process_index=i,
                         process_count=2, prefetch=0) for i in (0, 1)]
  assert not set(hosts[0].shard.tolist()) & set(hosts[1].shard.tolist())
  assert sorted(np.concatenate([h.shard for h in hosts]).tolist()) == sorted(
      times.tolist())
  drawn = set()
  for step in range(3):
    key = jax.random.fold_in(jax.random.PRNGKey(0), step)
    batches = [h(key) for h in hosts]
    read = [h.read.calls[-1][1] for h in hosts]
    assert [r.size for r in read] == [2, 2]
    for h, r, batch in zip(hosts, read, batches):
      assert set(r.tolist()) <= set(h.shard.tolist())
      assert batch.inputs.sizes["batch"] == 2
    assert len(set(np.concatenate(read).tolist())) == 4  # batch_size distinct
    drawn |= set(np.concatenate(read).tolist())
    # Resumable: the same key gives the same batch, in a fresh stream too.
    again = ExampleStream(Reader(store), times, 4, process_index=1,
                          process_count=2, prefetch=0)
    assert same(again(key), batches[1])
    np.testing.assert_array_equal(again.read.calls[0][1], read[1])
  assert len(drawn) > 4  # other keys, other examples


def test_prefetch_reads_the_same_batch_in_the_background(store):
  times = init_times(store)
  direct = ExampleStream(Reader(store), times, 2, process_index=0,
                         process_count=1, prefetch=0)
  stream = ExampleStream(Reader(store), times, 2, process_index=0,
                         process_count=1, prefetch=2)
  try:
    key = jax.random.PRNGKey(3)
    stream.prefetch(key)
    stream.prefetch(key)  # already asked for: not read twice
    batch = stream(key)
    assert same(batch, direct(key))
    assert [name.startswith(STREAM_THREAD) for name, _ in
            stream.read.calls] == [True]
    # Not prefetched: read on the caller's thread.
    stream(jax.random.PRNGKey(4))
    assert stream.read.calls[-1][0] == threading.current_thread().name
  finally:
    stream.close()


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=4, process_index=2, process_count=2),
     r"process_index 2 is not in \[0, 2\)"),
    (dict(batch_size=4, process_index=-1, process_count=2),
     "process_index -1"),
    (dict(batch_size=3, process_index=0, process_count=2),
     "batch_size 3 must be a positive multiple of the process count 2"),
    (dict(batch_size=0, process_index=0, process_count=1),
     "batch_size 0"),
])
def test_bad_process_index_or_batch_size_is_a_one_line_error(kwargs,
                                                            message):
  with pytest.raises(ValueError, match=message) as error:
    ExampleStream(lambda t: t, np.arange(8), **kwargs)
  assert "\n" not in str(error.value)


# --------------------------------------------------- controller training --

TOY_CONTROLLER = ControllerConfig(horizon=1, network=ConvNetConfig(
    width=4, num_blocks=1, kernel_size=3, dilations=(1,), embedding_size=8))
TOY_REGIMES = [ObservationRegime("half", fraction=0.5, noise_std=0.1)]


def toy_trajectories(num, length):
  rng = np.random.default_rng(0)
  return rng.normal(size=(num, length) + ToyARDM().state_shape).astype(
      np.float32)


def test_streamed_windows_have_window_batches_layout():
  data = toy_trajectories(6, 5)  # each example longer than a window of 3
  read = lambda index: (data[index], None)
  windows = StreamedWindows(ExampleStream(read, np.arange(6), 4, 0, 1,
                                          prefetch=0), 4, 2, 3, 1)
  w, cold, context = windows(jax.random.PRNGKey(0))
  assert w.shape == (4, 3) + data.shape[2:] and context is None
  assert cold.shape == (4, 2, 1) + data.shape[2:]
  assert not windows.process_local
  # Every window is a run of consecutive states of one trajectory.
  for example in w:
    matches = [(n, t) for n in range(6) for t in range(3)
               if np.array_equal(data[n, t:t + 3], example)]
    assert matches
  again = windows(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(again[0], w)
  np.testing.assert_array_equal(again[1], cold)


def test_process_local_stream_needs_a_mesh_and_is_placed_locally(
    monkeypatch):
  data = toy_trajectories(4, 2)
  half = lambda key: (data[:2], {"c": np.zeros((2, 2, 3), np.float32)})
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(ValueError, match="needs controller_training.shard_batch"):
    StreamedWindows(half, 4, 2, 2, 1)(jax.random.PRNGKey(0))
  windows = StreamedWindows(half, 4, 2, 2, 1, sharded=True)
  windows(jax.random.PRNGKey(0))
  assert windows.process_local
  with pytest.raises(ValueError, match="the stream gave 2 examples; batch_size"
                     " 6 needs 6"):
    StreamedWindows(half, 6, 2, 2, 1, sharded=True)(jax.random.PRNGKey(0))
  monkeypatch.undo()
  # With one process a local batch is the whole batch.
  mesh = sharding.make_mesh(1)
  batch = (data, {"c": data[:, 0]})
  local, whole = (sharding.shard_local_batch(batch, mesh),
                  sharding.shard_batch(batch, mesh))
  jax.tree.map(np.testing.assert_array_equal, local, whole)


def test_train_controller_takes_a_stream_read_step_by_step(tmp_path):
  ardm, data = ToyARDM(), toy_trajectories(6, 3)
  calls = []

  def read(index):
    calls.append((threading.current_thread().name, np.asarray(index)))
    return data[index], None

  training = ControllerTrainingConfig(
      objective="state", members=2, window=1, spinup=1, cold_fraction=0.5,
      batch_size=2, num_steps=3, log_every=1, shard_batch=True)
  stream = ExampleStream(read, np.arange(6), 2, prefetch=2)
  identity = {"examples": "toy", "times": np.arange(6)}
  try:
    params, history = train_controller(
        ardm, None, TOY_REGIMES, TOY_CONTROLLER, training, tmp_path,
        progress=False, batches=stream, scale=np.ones(3, np.float32),
        data_identity=identity)
  finally:
    stream.close()
  assert [r["step"] for r in history if "loss" in r] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) for r in history if "loss" in r)
  # One read of batch_size examples per step, steps 2 and 3 in the background.
  assert [c[1].size for c in calls] == [2, 2, 2]
  assert [c[0].startswith(STREAM_THREAD) for c in calls] == [False, True, True]
  # The run is identified by its examples, not by arrays: other examples,
  # another run.
  with pytest.raises(training_loop.RunMismatchError, match="training data"):
    train_controller(ardm, None, TOY_REGIMES, TOY_CONTROLLER,
                     dataclasses.replace(training, num_steps=4), tmp_path,
                     progress=False, batches=stream,
                     scale=np.ones(3, np.float32),
                     data_identity=dict(identity, times=np.arange(1, 7)))
  with pytest.raises(ValueError, match="not both"):
    train_controller(ardm, data, TOY_REGIMES, TOY_CONTROLLER, training,
                     batches=stream, scale=np.ones(3), data_identity={})
  with pytest.raises(ValueError, match="needs the scale and data_identity"):
    train_controller(ardm, None, TOY_REGIMES, TOY_CONTROLLER, training,
                     batches=stream)


# ------------------------------------------------------- GenCast's job --


@pytest.mark.gencast
def test_gencast_job_streams_its_examples_from_the_store(
    tmp_path, monkeypatch):
  """train_controller_step on the tiny GenCast and a 10 deg zarr store:
  one read for the examples' structure, then one batch per step (the next
  one in the background), never all examples at once."""
  pytest.importorskip(
      "gencast_control.adapters.gencast.predictor",
      reason="DeepMind's GenCast code is not installed (pip install"
      " 'gencast-control[gencast]' or '[gencast-next]'); the GenCast job"
      " test needs it", exc_type=ImportError)
  from gencast_control.configs import gencast_1deg_train
  from gencast_control.adapters.gencast import assets as gencast_assets
  from gencast_control.adapters.gencast import job, tiny
  from gencast_control.core.checkpoint import load_checkpoint
  path = tmp_path / "era5_10deg.zarr"
  write_wb2_store(path, num_lat=19, num_lon=36, days=4)
  model = tiny.tiny_model(seed=0)
  model = dataclasses.replace(model, sampler_config=dataclasses.replace(
      model.sampler_config, num_noise_levels=4))
  monkeypatch.setattr(gencast_assets, "load_model", lambda *a, **k: model)
  calls = []
  real = era5_batches.to_gencast_batch

  def recorded(store, init_time, **kwargs):
    calls.append((threading.current_thread().name, np.asarray(init_time),
                  kwargs["target_steps"]))
    return real(store, init_time, **kwargs)

  monkeypatch.setattr(era5_batches, "to_gencast_batch", recorded)
  config = gencast_1deg_train.get_config()
  config = dataclasses.replace(
      config, store=str(path), years=(2020, 2020), num_examples=6,
      controller=TOY_CONTROLLER,
      controller_training=dataclasses.replace(
          config.controller_training, batch_size=2, num_steps=2,
          log_every=1))
  out = tmp_path / "run" / "controller.npz"
  job.train_controller_step(config, out, out.with_suffix(".work"),
                            progress=False)
  _, meta = load_checkpoint(out)
  assert np.isfinite(meta["final_loss"]) and meta["tiny"] is False
  # The structure (one example), then batch_size examples per step.
  assert [c[1].size for c in calls] == [1, 2, 2]
  assert {c[2] for c in calls} == {1}  # spinup 0 + window 1 targets
  assert [c[0].startswith(STREAM_THREAD) for c in calls[1:]] == [False, True]
  drawn = job.draw_init_times(xr.open_zarr(path)["time"].values, (2020, 2020),
                              6, 1, config.example_seed)
  for _, times, _ in calls:
    assert set(times.astype("datetime64[h]").tolist()) <= set(drawn.tolist())
