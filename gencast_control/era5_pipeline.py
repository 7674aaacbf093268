"""Streaming ERA5 training examples from a WeatherBench2 store.

Example i is drawn from the seed alone: its init time t0 is uniform over the
candidate times (store times whose whole window t0 - (H-1)*dt .. t0 + T*dt lies
in the store and in the configured year ranges, at the allowed UTC hours),
using the random generator seeded by (seed, i). The stream therefore does not
depend on prefetching, and resuming = restarting at i = number consumed
(`PipelineState`). Frames are read lazily from the store on a background
thread (`prefetch.Prefetcher`) and stacked channel-last with lat ascending.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from gencast_control import era5_batches, era5_schema, era5_store
from gencast_control.prefetch import Prefetcher


@dataclasses.dataclass(frozen=True)
class ERA5PipelineConfig:
  """Where and what to stream.

  Attributes:
    store: registry name (configs/stores.py) or path of the store.
    variables: store variables stacked as channels (static fields allowed).
    levels: pressure levels for atmospheric variables (None: all).
    years: inclusive (first, last) year ranges; the whole window of an
      example must lie inside them (no leakage across a split boundary).
    history_frames: H frames t0 - (H-1)*dt .. t0.
    target_frames: T frames t0 + dt .. t0 + T*dt.
    step_hours: model time step dt (a multiple of the store's step).
    init_hours: allowed UTC hours of t0 (None: any store time).
    resolution_step: every k-th lat/lon point.
    require_poles: demand latitudes +-90.
    fill_nan: (variable, value) pairs filled where NaN (e.g. SST over land).
    seed: random seed of the stream.
    prefetch: examples computed ahead on the background thread.
    timeout_s: deadline for opening a remote store.
  """
  store: str
  variables: tuple[str, ...]
  levels: tuple[int, ...] | None = None
  years: tuple[tuple[int, int], ...] = ((1979, 2017),)
  history_frames: int = 2
  target_frames: int = 1
  step_hours: int = 12
  init_hours: tuple[int, ...] | None = (0, 12)
  resolution_step: int = 1
  require_poles: bool = False
  fill_nan: tuple[tuple[str, float], ...] = ()
  seed: int = 0
  prefetch: int = 2
  timeout_s: float = 30.0

  def __post_init__(self):
    if self.history_frames < 1 or self.target_frames < 1:
      raise ValueError("history_frames and target_frames must be >= 1")
    if self.step_hours < 1:
      raise ValueError(f"step_hours must be >= 1, got {self.step_hours}")
    if not self.years or any(a > b for a, b in self.years):
      raise ValueError(f"years must be non-empty (first, last) ranges with"
                       f" first <= last, got {self.years}")
    if self.prefetch < 1:
      raise ValueError(f"prefetch must be >= 1, got {self.prefetch}")


@dataclasses.dataclass(frozen=True)
class PipelineState:
  """Everything needed to resume a stream: its seed and examples consumed."""
  seed: int
  consumed: int = 0

  def save(self, path: str | os.PathLike) -> None:
    """Writes the state as JSON atomically (temp file + os.replace)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               suffix=".tmp")
    with os.fdopen(fd, "w") as f:
      json.dump(dataclasses.asdict(self), f)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "PipelineState":
    with open(path) as f:
      return cls(**json.load(f))


class Example(NamedTuple):
  """One training example.

  history: [H, lat, lon, C] frames up to t0; targets: [T, lat, lon, C];
  times: [H + T] datetime64 of the frames; index: position in the stream.
  """
  history: np.ndarray
  targets: np.ndarray
  times: np.ndarray
  index: int


def candidate_init_times(times: np.ndarray, step: np.timedelta64,
                         history_frames: int, target_frames: int,
                         years: Sequence[tuple[int, int]],
                         init_hours: Sequence[int] | None) -> np.ndarray:
  """Indices t0 of `times` whose whole example window is valid (see module)."""
  times = np.asarray(times, "datetime64[ns]")
  store_step = era5_schema.store_time_step(times)
  if step % store_step:
    raise ValueError(
        f"step {era5_schema.format_timedelta(step)} is not a multiple of the"
        f" store's time step {era5_schema.format_timedelta(store_step)}")
  k = int(step // store_step)
  n = times.size
  index = np.arange(n)
  first, last = index - (history_frames - 1) * k, index + target_frames * k
  ok = (first >= 0) & (last <= n - 1)
  year = pd.DatetimeIndex(times).year.values

  def in_years(i):
    y = year[np.clip(i, 0, n - 1)]
    return np.any([(y >= a) & (y <= b) for a, b in years], axis=0)

  ok &= in_years(first) & in_years(last)
  if init_hours is not None:
    ok &= np.isin(pd.DatetimeIndex(times).hour.values, list(init_hours))
  return index[ok]


class ERA5Pipeline:
  """Deterministic, resumable, prefetched stream of `Example`s.

  Usage:
    with ERA5Pipeline(config) as pipeline:
      batch = pipeline.next_batch(8)         # or next(pipeline)
      pipeline.state().save("stream.json")   # resume with state=...
  """

  def __init__(self, config: ERA5PipelineConfig,
               dataset: xr.Dataset | None = None,
               state: PipelineState | None = None):
    if state is not None and state.seed != config.seed:
      raise ValueError(f"state was saved for seed {state.seed} but the config"
                       f" has seed {config.seed}")
    self.config = config
    store = (dataset if dataset is not None else
             era5_store.open_store(config.store, timeout_s=config.timeout_s))
    era5_schema.check_variables(store, config.variables)
    self._grid = era5_schema.standardize_grid(
        store[list(config.variables)], config.resolution_step,
        config.require_poles)
    self._step = np.timedelta64(config.step_hours, "h").astype(
        "timedelta64[ns]")
    times = self._grid["time"].values
    self._k = int(self._step // era5_schema.store_time_step(times))
    self._candidates = candidate_init_times(
        times, self._step, config.history_frames, config.target_frames,
        config.years, config.init_hours)
    if self._candidates.size == 0:
      raise ValueError(
          f"no init time of the store ({era5_store.describe_time(times)})"
          f" fits years {config.years}, hours {config.init_hours} and a window"
          f" of {config.history_frames}+{config.target_frames} frames")
    self._consumed = state.consumed if state is not None else 0
    self._prefetcher: Prefetcher | None = None
    _, self.channels = era5_batches.latlon_state(
        self._grid.isel(time=[0]), config.variables, config.levels,
        fill_nan=dict(config.fill_nan) or None)

  @property
  def lat(self) -> np.ndarray:
    return self._grid["lat"].values

  @property
  def lon(self) -> np.ndarray:
    return self._grid["lon"].values

  @property
  def num_candidates(self) -> int:
    """How many distinct init times the stream draws from."""
    return int(self._candidates.size)

  def init_time(self, index: int) -> np.datetime64:
    """The init time t0 of example `index` (a function of seed and index)."""
    rng = np.random.default_rng([self.config.seed, index])
    return self._grid["time"].values[
        self._candidates[rng.integers(self._candidates.size)]]

  def example(self, index: int) -> Example:
    """Example `index` of the stream, read synchronously."""
    rng = np.random.default_rng([self.config.seed, index])
    t0 = int(self._candidates[rng.integers(self._candidates.size)])
    h, t = self.config.history_frames, self.config.target_frames
    idx = t0 + self._k * np.arange(-(h - 1), t + 1)
    frames = self._grid.isel(time=idx)
    values, _ = era5_batches.latlon_state(
        frames, self.config.variables, self.config.levels,
        fill_nan=dict(self.config.fill_nan) or None)
    return Example(history=values[:h], targets=values[h:],
                   times=frames["time"].values, index=index)

  def state(self) -> PipelineState:
    """Seed and number of examples delivered so far."""
    return PipelineState(seed=self.config.seed, consumed=self._consumed)

  def __iter__(self) -> "ERA5Pipeline":
    return self

  def __next__(self) -> Example:
    if self._prefetcher is None:
      self._prefetcher = Prefetcher(self.example, start=self._consumed,
                                    buffer_size=self.config.prefetch)
    example = next(self._prefetcher)
    self._consumed += 1
    return example

  def next_batch(self, batch_size: int) -> Example:
    """`batch_size` consecutive examples stacked on a leading batch axis."""
    examples = [next(self) for _ in range(batch_size)]
    return Example(*(np.stack(x) for x in zip(*examples)))

  def close(self) -> None:
    """Stops the prefetch thread (the state stays valid for resuming)."""
    if self._prefetcher is not None:
      self._prefetcher.close()
      self._prefetcher = None

  def __enter__(self) -> "ERA5Pipeline":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
