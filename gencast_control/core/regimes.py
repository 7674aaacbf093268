"""Observation regimes: how a truth trajectory is observed.

A regime is a named, frozen description of an observing system on a grid:
which points are observed (a fraction of the grid points, random or regularly
spaced, fixed in time or redrawn each time, or an explicit point list), how
often (every k-th time), and with what Gaussian noise,

    y_t = M_t * (x_t + sigma_obs * eps_t),   eps_t ~ N(0, I),

where M_t is the 0/1 mask of observed points at time t (all channels of an
observed point are observed); sigma_obs may differ per channel. On a
latitude-longitude grid [lat, lon, C] two layouts model weather observing
systems: "area" draws stations uniformly in area on the sphere (probability
proportional to cos(latitude), by weighted sampling without replacement:
the points of smallest E_i / w_i, E_i ~ Exp(1); Efraimidis & Spirakis 2006),
and "swath" observes a polar-orbit-like pair of meridional bands (the
ascending and descending track, 180 deg apart) that moves on by 137.5 deg of
longitude every time, so successive passes interleave. A heteroscedastic
regime (`noise_std_max`) gives every grid point its own sigma_obs,
log-uniform in [noise_std, noise_std_max] and drawn once per draw (so each
station of a fixed network keeps its quality over time): a network of mixed
quality. Sampling is traceable, so training draws fresh observations inside
jit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.observations import Observations


@dataclasses.dataclass(frozen=True)
class ObservationRegime:
  """A named observing system.

  Attributes:
    name: short identifier (used in tables and configs).
    fraction: fraction of grid points observed at an observation time
      (default 0.1; not with `points`).
    layout: "random" points, "regular" (evenly spaced along the flattened
      grid), "area" (random, uniform in area on an equiangular [lat, lon]
      grid with cell-centre latitudes -90 + (i + 1/2) 180 / n_lat) or
      "swath" (two meridional bands covering `fraction` of the longitudes,
      on a [lat, lon] grid; redrawn per time, so `fixed` must be False).
    fixed: the same points at every time (a station network) or redrawn per
      time. A fixed regular network is the same in every draw (offset 0); a
      fixed random one is drawn once per key (per trajectory).
    every: observations at times t with t % every == phase (t >= 1).
    noise_std: observation-error standard deviation sigma_obs in the units of
      the states, one value or one per channel; the smallest one of a
      heteroscedastic regime.
    noise_units: "state" (noise_std is in the units of the states) or
      "physical": one noise_std per channel in the physical units of data
      standardised per channel (the ERA5 data step); `in_state_units`
      divides by the channel stds before the regime can be sampled.
    noise_std_max: if set, each point's sigma_obs is drawn log-uniformly in
      [noise_std, noise_std_max] (a network of mixed quality).
    points: explicit flat grid indices (overrides fraction/layout; fixed).
  """
  name: str
  fraction: float | None = None
  layout: Literal["random", "regular", "area", "swath"] = "random"
  fixed: bool = False
  every: int = 1
  noise_std: float | tuple[float, ...] = 0.1
  noise_units: Literal["state", "physical"] = "state"
  noise_std_max: float | None = None
  points: tuple[int, ...] | None = None

  def __post_init__(self):
    if self.points is not None and self.fraction is not None:
      raise ValueError(f"regime {self.name!r}: give `points` or `fraction`,"
                       " not both (a point list fixes the observed points)")
    if self.points is None and self.fraction is None:
      object.__setattr__(self, "fraction", 0.1)
    if self.points is None and not 0.0 < self.fraction <= 1.0:
      raise ValueError(f"regime {self.name!r}: fraction must be in (0, 1],"
                       f" got {self.fraction}")
    if self.layout not in LAYOUTS:
      raise ValueError(f"regime {self.name!r}: unknown layout {self.layout!r};"
                       f" known: {', '.join(LAYOUTS)}")
    if self.layout == "swath" and self.fixed:
      raise ValueError(f"regime {self.name!r}: a swath moves, it cannot be"
                       " fixed")
    if self.every < 1:
      raise ValueError(f"regime {self.name!r}: every must be >= 1")
    if isinstance(self.noise_std, list):
      object.__setattr__(self, "noise_std", tuple(self.noise_std))
    if np.any(np.asarray(self.noise_std) <= 0) or np.size(self.noise_std) < 1:
      raise ValueError(f"regime {self.name!r}: noise_std must be > 0, got"
                       f" {self.noise_std}")
    if self.noise_units not in ("state", "physical"):
      raise ValueError(f"regime {self.name!r}: noise_units must be 'state' or"
                       f" 'physical', got {self.noise_units!r}")
    if self.noise_units == "physical" and not isinstance(self.noise_std,
                                                           tuple):
      raise ValueError(f"regime {self.name!r}: physical noise_std needs one"
                       " value per channel")
    if self.noise_std_max is not None and isinstance(self.noise_std, tuple):
      raise ValueError(f"regime {self.name!r}: noise_std_max needs a scalar"
                       " noise_std")
    if self.noise_std_max is not None and self.noise_std_max < self.noise_std:
      raise ValueError(f"regime {self.name!r}: noise_std_max"
                       f" ({self.noise_std_max}) must be >= noise_std"
                       f" ({self.noise_std})")
    if self.points is not None and len(self.points) == 0:
      raise ValueError(f"regime {self.name!r}: empty point list")

  def in_state_units(self, channel_std: Sequence[float]) -> "ObservationRegime":
    """This regime with physical per-channel noise divided by the channel
    stds s_c of standardised states (sigma_c / s_c); other regimes as is."""
    if self.noise_units == "state":
      return self
    std = np.asarray(channel_std, np.float64)
    if std.shape != (len(self.noise_std),):
      raise ValueError(f"regime {self.name!r} gives {len(self.noise_std)}"
                       f" physical noise std(s) but the data have {std.size}"
                       " channel(s)")
    return dataclasses.replace(
        self, noise_units="state",
        noise_std=tuple(float(n / s) for n, s in zip(self.noise_std, std)))

  def scaled(self, channel_std: Sequence[float]) -> "ObservationRegime":
    """This regime with its noise_std read as fractions n_c of per-channel
    stds s_c and given as sigma_c = n_c s_c, for models whose states are in
    physical units (GenCast: s_c its climatological stds)."""
    if self.noise_units != "state" or self.noise_std_max is not None:
      raise ValueError(f"regime {self.name!r}: only a homoscedastic regime in"
                       " state units can be scaled to physical units")
    std = np.asarray(channel_std, np.float64)
    fractions = np.broadcast_to(np.asarray(self.noise_std, np.float64),
                                std.shape)
    return dataclasses.replace(
        self, noise_std=tuple(float(n * s) for n, s in zip(fractions, std)))

  def num_points(self, grid_size: int) -> int:
    if self.points is not None:
      return len(self.points)
    return max(1, int(round(self.fraction * grid_size)))


LAYOUTS = ("random", "regular", "area", "swath")
SWATH_STEP_DEG = 360.0 * (1 - 1 / ((1 + math.sqrt(5)) / 2))  # 137.5 deg


def _regime_arrays(regimes: Sequence[ObservationRegime], grid_size: int,
                   channels: int):
  """Regime parameters as stacked arrays, so one traced function serves all."""
  unconverted = [r.name for r in regimes if r.noise_units != "state"]
  if unconverted:
    raise ValueError(
        f"regime(s) {unconverted} give noise in physical units: convert them"
        " with ObservationRegime.in_state_units(channel_std) first")
  per_channel = any(isinstance(r.noise_std, tuple) for r in regimes)
  for r in regimes:
    if isinstance(r.noise_std, tuple) and len(r.noise_std) != channels:
      raise ValueError(f"regime {r.name!r} gives {len(r.noise_std)} noise"
                       f" std(s) but the states have {channels} channel(s)")
  noise = [np.broadcast_to(np.asarray(r.noise_std, np.float32), (channels,))
           if per_channel else r.noise_std for r in regimes]
  points = np.zeros((len(regimes), grid_size), np.float32)
  for i, r in enumerate(regimes):
    if r.points is not None:
      idx = np.asarray(r.points)
      if idx.min() < 0 or idx.max() >= grid_size:
        raise ValueError(f"regime {r.name!r}: point indices must lie in"
                         f" [0, {grid_size}), got {idx.min()}..{idx.max()}")
      points[i, idx] = 1.0
  col = lambda f, dtype=jnp.float32: jnp.asarray([f(r) for r in regimes], dtype)
  return dict(
      count=col(lambda r: r.num_points(grid_size)),
      layout=col(lambda r: LAYOUTS.index(r.layout), jnp.int32),
      fixed=col(lambda r: r.fixed, bool),
      listed=col(lambda r: r.points is not None, bool),
      every=col(lambda r: r.every, jnp.int32),
      noise_std=jnp.asarray(noise, jnp.float32),
      noise_spread=col(lambda r: 0.0 if r.noise_std_max is None
                       else np.log(r.noise_std_max / r.noise_std)),
      points=jnp.asarray(points))


def _area_weights(spatial: tuple[int, ...]) -> np.ndarray:
  """[grid_size] cos(latitude) of an equiangular [lat, lon] grid's cells."""
  if len(spatial) != 2:
    return np.ones(int(np.prod(spatial)), np.float32)
  lat = -90.0 + (np.arange(spatial[0]) + 0.5) * 180.0 / spatial[0]
  return np.repeat(np.cos(np.deg2rad(lat)), spatial[1]).astype(np.float32)


def _swath_masks(fraction, offset, num_times: int, spatial: tuple[int, ...]
                 ) -> jax.Array:
  """[num_times, grid_size] two bands of longitudes 180 deg apart, each
  fraction / 2 of the longitudes wide, centred at offset + t * 137.5 deg."""
  num_lon = spatial[-1] if len(spatial) == 2 else int(np.prod(spatial))
  lon = (jnp.arange(num_lon) + 0.5) / num_lon  # in turns
  centre = offset + jnp.arange(num_times)[:, None] * SWATH_STEP_DEG / 360.0
  distance = jnp.abs((lon[None, :] - centre + 0.25) % 0.5 - 0.25)
  band = distance < fraction / 4  # two bands of width fraction / 2
  rows = spatial[0] if len(spatial) == 2 else 1
  return jnp.tile(band, (1, rows))


def _flat_masks(p, key, num_times: int, spatial: tuple[int, ...], phase
                ) -> jax.Array:
  """[num_times, grid_size] 0/1 masks for one regime's parameter arrays `p`."""
  grid_size = int(np.prod(spatial))
  k_time, k_fixed = jax.random.split(key)
  # Random layout: the `count` points of lowest score; area layout: the same
  # with scores E / cos(lat), E ~ Exp(1); regular layout: every stride-th
  # point from a random offset. Scores/offsets drawn per time, or once for a
  # fixed network.
  uniform = jnp.where(p["fixed"],
                      jax.random.uniform(k_fixed, (1, grid_size)),
                      jax.random.uniform(k_time, (num_times, grid_size)))
  layout = p["layout"]
  scores = jnp.where(layout == LAYOUTS.index("area"),
                     -jnp.log1p(-uniform) / _area_weights(spatial), uniform)
  ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
  random_mask = ranks < p["count"]
  stride = grid_size / p["count"]
  offset = jnp.where(p["fixed"], 0.0, uniform[:, :1] * stride)
  position = jnp.arange(grid_size)[None, :]
  k = jnp.ceil((position - offset) / stride)
  regular_mask = (offset + stride * k < position + 1) & (k < p["count"])
  swath_mask = _swath_masks(p["count"] / grid_size, uniform[0, 0], num_times,
                            spatial)
  mask = jnp.where(layout == LAYOUTS.index("regular"), regular_mask,
                   random_mask)
  mask = jnp.where(layout == LAYOUTS.index("swath"), swath_mask, mask)
  mask = jnp.where(p["listed"], p["points"][None, :] > 0, mask)
  times = jnp.arange(num_times)[:, None]
  active = ((times - phase) % p["every"] == 0) & (times >= 1)
  return (mask & active).astype(jnp.float32)


def sample_observations(regimes: ObservationRegime | Sequence[ObservationRegime],
                        key: jax.Array, truth: jax.Array,
                        phase: int | jax.Array = 0,
                        choice: int | jax.Array = 0) -> Observations:
  """Observes a truth trajectory [T+1, *spatial, C] (traceable).

  Args:
    regimes: a regime, or a list of regimes of which `choice` (possibly traced)
      is used, so a batch can mix observing systems without recompiling.
    key: PRNG key for the points and the noise.
    truth: [T+1, *spatial, C]; time 0 (the initial state) is never observed.
    phase: observed times are t >= 1 with t % every == phase % every.

  Returns:
    Observations whose noise_std is the regime's sigma_obs (scalar, or [C]
    when any of `regimes` gives one per channel), or, when
    any of `regimes` is heteroscedastic, one sigma_obs per entry.
  """
  if isinstance(regimes, ObservationRegime):
    regimes = [regimes]
  num_times = truth.shape[0]
  spatial = tuple(truth.shape[1:-1])
  grid_size = int(np.prod(spatial))
  params = jax.tree.map(lambda a: a[choice],
                        _regime_arrays(regimes, grid_size, truth.shape[-1]))
  mask_key, noise_key = jax.random.split(key)
  flat = _flat_masks(params, mask_key, num_times, spatial, phase)
  mask = jnp.broadcast_to(flat.reshape((num_times,) + spatial + (1,)),
                          truth.shape)
  std = params["noise_std"]
  if any(r.noise_std_max is not None for r in regimes):
    quality = jax.random.uniform(jax.random.fold_in(key, 0x5D),
                                 spatial + (1,))
    std = jnp.broadcast_to(
        std * jnp.exp(params["noise_spread"] * quality), truth.shape)
  noise = std * jax.random.normal(noise_key, truth.shape)
  return Observations(values=mask * (truth + noise), mask=mask,
                      noise_std=std)
