"""Streaming ERA5 pipeline and the background prefetcher (no network)."""

import gc
import threading
import time

import numpy as np
import pandas as pd
import pytest

from gencast_control import era5
from gencast_control.era5_pipeline import (ERA5Pipeline, ERA5PipelineConfig,
                                           PipelineState,
                                           candidate_init_times)
from gencast_control.prefetch import Prefetcher
from tests.wb2_store import make_wb2_dataset, write_wb2_store

VARIABLES = ("2m_temperature", "temperature", "land_sea_mask")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("wb2") / "era5.zarr"
  # 2019-12-29 .. 2020-01-04: the stream can straddle a year boundary.
  write_wb2_store(path, days=7, start="2019-12-29", num_lat=37, num_lon=72)
  return str(path)


@pytest.fixture(scope="module")
def raw():
  return make_wb2_dataset(days=7, start="2019-12-29", num_lat=37, num_lon=72)


def config(store_path, **kwargs):
  kwargs.setdefault("years", ((2019, 2020),))
  return ERA5PipelineConfig(store=store_path, variables=VARIABLES,
                            levels=(850,), resolution_step=2, **kwargs)


def take(pipeline, n):
  return [next(pipeline) for _ in range(n)]


def test_candidates_match_brute_force(raw):
  times = raw["time"].values
  step = np.timedelta64(12, "h")
  got = candidate_init_times(times, step, 2, 2, [(2020, 2020)], (0, 12))
  expected = []
  for i, t in enumerate(times):
    window = [t + k * step for k in (-1, 0, 1, 2)]
    if (pd.Timestamp(t).hour in (0, 12) and all(w in times for w in window)
        and all(pd.Timestamp(w).year == 2020 for w in window)):
      expected.append(i)
  np.testing.assert_array_equal(got, expected)
  assert len(expected) > 3
  with pytest.raises(ValueError, match="not a multiple"):
    candidate_init_times(times, np.timedelta64(5, "h"), 2, 1, [(2020, 2020)],
                         None)


def test_examples_are_store_frames(store_path, raw):
  with ERA5Pipeline(config(store_path, target_frames=2)) as pipeline:
    assert pipeline.channels == ["2m_temperature", "temperature@850",
                                 "land_sea_mask"]
    assert pipeline.lat[0] == -90 and pipeline.lat[-1] == 90
    example = next(pipeline)
  assert example.history.shape == (2, 19, 36, 3)
  assert example.targets.shape == (2, 19, 36, 3)
  t0 = example.times[1]
  np.testing.assert_array_equal(
      example.times - t0, np.array([-12, 0, 12, 24], "timedelta64[h]"))
  assert pd.Timestamp(t0).hour in (0, 12)
  for k, when in enumerate(example.times):
    frame = raw.sel(time=when).isel(latitude=slice(None, None, 2),
                                    longitude=slice(None, None, 2))
    values = np.concatenate([example.history, example.targets])[k]
    np.testing.assert_array_equal(values[..., 0],
                                  frame["2m_temperature"].values[::-1])
    np.testing.assert_array_equal(
        values[..., 1], frame["temperature"].sel(level=850).values[::-1])


def test_deterministic_given_seed(store_path):
  def init_times(seed):
    with ERA5Pipeline(config(store_path, seed=seed)) as pipeline:
      return [e.times[1] for e in take(pipeline, 12)]

  first, again, other = init_times(3), init_times(3), init_times(4)
  assert first == again
  assert first != other
  with ERA5Pipeline(config(store_path, seed=3)) as pipeline:
    assert len(set(first)) > 1 and len(set(first)) <= pipeline.num_candidates
    # Synchronous access gives the same stream as the prefetched one.
    assert [pipeline.init_time(i) for i in range(12)] == first


def test_years_restrict_the_windows(store_path):
  with ERA5Pipeline(config(store_path, years=((2020, 2020),),
                           target_frames=1)) as pipeline:
    for example in take(pipeline, 10):
      assert all(pd.DatetimeIndex(example.times).year == 2020)
  with pytest.raises(ValueError, match="no init time of the store"):
    ERA5Pipeline(config(store_path, years=((2000, 2001),)))


def test_resume_continues_the_same_sequence(store_path, tmp_path):
  cfg = config(store_path, seed=11)
  with ERA5Pipeline(cfg) as pipeline:
    take(pipeline, 5)
    state = pipeline.state()
    assert state == PipelineState(seed=11, consumed=5)
    state.save(tmp_path / "state.json")
    expected = take(pipeline, 4)
  restored = PipelineState.load(tmp_path / "state.json")
  with ERA5Pipeline(cfg, state=restored) as pipeline:
    resumed = take(pipeline, 4)
    assert pipeline.state().consumed == 9
  for a, b in zip(expected, resumed):
    assert a.index == b.index
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.history, b.history)
  with pytest.raises(ValueError, match="seed 11 but the config has seed 0"):
    ERA5Pipeline(config(store_path), state=restored)


def test_next_batch_stacks(store_path):
  with ERA5Pipeline(config(store_path)) as pipeline:
    batch = pipeline.next_batch(3)
    assert batch.history.shape == (3, 2, 19, 36, 3)
    assert batch.targets.shape == (3, 1, 19, 36, 3)
    np.testing.assert_array_equal(batch.index, [0, 1, 2])
    assert pipeline.state().consumed == 3


def test_pipeline_error_reaches_consumer_and_close_stops_thread(store_path):
  pipeline = ERA5Pipeline(config(store_path))

  def broken(index):
    if index == 2:
      raise KeyError("chunk 2 is corrupt")
    return index

  pipeline.example = broken
  assert take(pipeline, 2) == [0, 1]
  with pytest.raises(KeyError, match="chunk 2 is corrupt"):
    next(pipeline)
  assert pipeline.state().consumed == 2
  thread = pipeline._prefetcher._thread
  pipeline.close()
  assert not thread.is_alive()


# -------------------------------------------------------------- prefetcher --
def test_prefetcher_is_bounded_and_ordered():
  produced = []

  def produce(i):
    produced.append(i)
    return i * i

  with Prefetcher(produce, start=5, buffer_size=2) as prefetcher:
    time.sleep(0.3)
    # buffer_size in the queue plus one blocked in put.
    assert len(produced) <= 3
    assert [next(prefetcher) for _ in range(4)] == [25, 36, 49, 64]


def test_prefetcher_close_stops_a_blocked_producer():
  prefetcher = Prefetcher(lambda i: i, buffer_size=1)
  time.sleep(0.1)
  start = time.monotonic()
  prefetcher.close()
  assert time.monotonic() - start < 1.0
  assert not prefetcher.alive
  with pytest.raises(RuntimeError, match="closed"):
    next(prefetcher)


def test_prefetcher_propagates_exceptions_and_stops():
  def produce(i):
    if i == 3:
      raise ValueError(f"bad item {i}")
    return i

  prefetcher = Prefetcher(produce, buffer_size=4)
  assert [next(prefetcher) for _ in range(3)] == [0, 1, 2]
  with pytest.raises(ValueError, match="bad item 3"):
    next(prefetcher)
  with pytest.raises(StopIteration):
    next(prefetcher)
  time.sleep(0.1)
  assert not prefetcher.alive


def test_prefetcher_finite_stream_and_threads_released():
  before = threading.active_count()
  for _ in range(5):
    with Prefetcher(lambda i: i, stop=3) as prefetcher:
      assert list(prefetcher) == [0, 1, 2]
  time.sleep(0.2)
  assert threading.active_count() <= before
  with pytest.raises(ValueError, match="buffer_size"):
    Prefetcher(lambda i: i, buffer_size=0)


def test_abandoned_prefetcher_stops_its_thread():
  prefetcher = Prefetcher(lambda i: i, buffer_size=1)
  thread = prefetcher._thread
  del prefetcher
  gc.collect()
  thread.join(1.0)
  assert not thread.is_alive()


def test_config_validation(store_path):
  with pytest.raises(ValueError, match="years"):
    ERA5PipelineConfig(store=store_path, variables=VARIABLES,
                       years=((2021, 2020),))
  with pytest.raises(ValueError, match="history_frames"):
    ERA5PipelineConfig(store=store_path, variables=VARIABLES,
                       history_frames=0)
  with pytest.raises(ValueError, match="not in the store"):
    ERA5Pipeline(ERA5PipelineConfig(store=store_path,
                                    variables=("relative_humidity",)))
  assert era5.open_store(store_path).sizes["latitude"] == 37
