"""Observation regimes: how a truth trajectory is observed.

A regime is a named, frozen description of an observing system on a grid:
which points are observed (a fraction of the grid points, random or regularly
spaced, fixed in time or redrawn each time, or an explicit point list), how
often (every k-th time), and with what Gaussian noise,

    y_t = M_t * (x_t + sigma_obs * eps_t),   eps_t ~ N(0, I),

where M_t is the 0/1 mask of observed points at time t (all channels of an
observed point are observed). A heteroscedastic regime (`noise_std_max`) gives
every grid point its own sigma_obs, log-uniform in [noise_std, noise_std_max]
and drawn once per draw (so each station of a fixed network keeps its
quality over time): a network of mixed quality. Sampling is traceable, so
training draws fresh observations inside jit.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.observations import Observations


@dataclasses.dataclass(frozen=True)
class ObservationRegime:
  """A named observing system.

  Attributes:
    name: short identifier (used in tables and configs).
    fraction: fraction of grid points observed at an observation time
      (default 0.1; not with `points`).
    layout: "random" points or "regular" (evenly spaced along the flattened
      grid).
    fixed: the same points at every time (a station network) or redrawn per
      time. A fixed regular network is the same in every draw (offset 0); a
      fixed random one is drawn once per key (per trajectory).
    every: observations at times t with t % every == phase (t >= 1).
    noise_std: observation-error standard deviation sigma_obs (physical units);
      the smallest one of a heteroscedastic regime.
    noise_std_max: if set, each point's sigma_obs is drawn log-uniformly in
      [noise_std, noise_std_max] (a network of mixed quality).
    points: explicit flat grid indices (overrides fraction/layout; fixed).
  """
  name: str
  fraction: float | None = None
  layout: Literal["random", "regular"] = "random"
  fixed: bool = False
  every: int = 1
  noise_std: float = 0.1
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
    if self.layout not in ("random", "regular"):
      raise ValueError(f"regime {self.name!r}: unknown layout {self.layout!r}")
    if self.every < 1:
      raise ValueError(f"regime {self.name!r}: every must be >= 1")
    if self.noise_std <= 0:
      raise ValueError(f"regime {self.name!r}: noise_std must be > 0")
    if self.noise_std_max is not None and self.noise_std_max < self.noise_std:
      raise ValueError(f"regime {self.name!r}: noise_std_max"
                       f" ({self.noise_std_max}) must be >= noise_std"
                       f" ({self.noise_std})")
    if self.points is not None and len(self.points) == 0:
      raise ValueError(f"regime {self.name!r}: empty point list")

  def num_points(self, grid_size: int) -> int:
    if self.points is not None:
      return len(self.points)
    return max(1, int(round(self.fraction * grid_size)))


def _regime_arrays(regimes: Sequence[ObservationRegime], grid_size: int):
  """Regime parameters as stacked arrays, so one traced function serves all."""
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
      regular=col(lambda r: r.layout == "regular", bool),
      fixed=col(lambda r: r.fixed, bool),
      listed=col(lambda r: r.points is not None, bool),
      every=col(lambda r: r.every, jnp.int32),
      noise_std=col(lambda r: r.noise_std),
      noise_spread=col(lambda r: np.log((r.noise_std_max or r.noise_std)
                                        / r.noise_std)),
      points=jnp.asarray(points))


def _flat_masks(p, key, num_times: int, grid_size: int, phase) -> jax.Array:
  """[num_times, grid_size] 0/1 masks for one regime's parameter arrays `p`."""
  k_time, k_fixed = jax.random.split(key)
  # Random layout: the `count` points of lowest score; regular layout: every
  # stride-th point from a random offset. Scores/offsets drawn per time, or
  # once for a fixed network.
  scores = jnp.where(p["fixed"],
                     jax.random.uniform(k_fixed, (1, grid_size)),
                     jax.random.uniform(k_time, (num_times, grid_size)))
  ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
  random_mask = ranks < p["count"]
  stride = grid_size / p["count"]
  offset = jnp.where(p["fixed"], 0.0, scores[:, :1] * stride)
  position = jnp.arange(grid_size)[None, :]
  k = jnp.ceil((position - offset) / stride)
  regular_mask = (offset + stride * k < position + 1) & (k < p["count"])
  mask = jnp.where(p["regular"], regular_mask, random_mask)
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
    Observations whose noise_std is the regime's scalar sigma_obs, or, when
    any of `regimes` is heteroscedastic, one sigma_obs per entry.
  """
  if isinstance(regimes, ObservationRegime):
    regimes = [regimes]
  num_times = truth.shape[0]
  spatial = tuple(truth.shape[1:-1])
  grid_size = int(np.prod(spatial))
  params = jax.tree.map(lambda a: a[choice],
                        _regime_arrays(regimes, grid_size))
  mask_key, noise_key = jax.random.split(key)
  flat = _flat_masks(params, mask_key, num_times, grid_size, phase)
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
