"""Synthetic observing systems: station networks, swaths, gridded subsets.

Produces the core's dense-in-time layout (`observations.Observations`): over
times t = 0..T, values [T+1, *spatial, C] (zeros where unobserved) and mask of
the same shape in {0, 1}. An observation is

    y_t = M_t * (x_t + sigma_c * eps_t),    eps_t ~ N(0, I)  i.i.d.,

with M_t = time_mask[t] * spatial_mask[t] * channel_mask (all channels of an
observed point unless a channel mask says otherwise) and sigma_c the noise
standard deviation of channel c. A NaN truth value is never observed.

Mask generators work on any spatial shape (1-D KS, 2-D flows, lat/lon grids;
the "generic" path); the lat/lon helpers place stations by coordinates and
sweep satellite-like swaths in degrees. Everything is numpy with explicit
seeds, so a network is reproducible.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from gencast_control.core.observations import Observations

EARTH_DEGREES = 360.0


# ------------------------------------------------------------ spatial masks --
def random_points_mask(spatial_shape: Sequence[int], num_points: int,
                       seed: int) -> np.ndarray:
  """Exactly `num_points` distinct points, uniform without replacement."""
  size = int(np.prod(spatial_shape))
  if not 0 < num_points <= size:
    raise ValueError(f"num_points must be in 1..{size}, got {num_points}")
  flat = np.zeros(size, bool)
  flat[np.random.default_rng(seed).choice(size, num_points, replace=False)] = 1
  return flat.reshape(tuple(spatial_shape))


def random_fraction_mask(spatial_shape: Sequence[int], fraction: float,
                         seed: int) -> np.ndarray:
  """round(fraction * size) distinct random points (at least one)."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  size = int(np.prod(spatial_shape))
  return random_points_mask(spatial_shape, max(1, round(fraction * size)), seed)


def gridded_mask(spatial_shape: Sequence[int], every: int | Sequence[int],
                 offset: int | Sequence[int] = 0) -> np.ndarray:
  """Every k-th point along each axis, starting at `offset`."""
  ndim = len(spatial_shape)
  every = (every,) * ndim if np.ndim(every) == 0 else tuple(every)
  offset = (offset,) * ndim if np.ndim(offset) == 0 else tuple(offset)
  if len(every) != ndim or len(offset) != ndim:
    raise ValueError(f"every/offset need {ndim} entries for a grid of shape"
                     f" {tuple(spatial_shape)}")
  if any(k < 1 for k in every):
    raise ValueError(f"every must be >= 1, got {every}")
  mask = np.zeros(tuple(spatial_shape), bool)
  mask[tuple(slice(o % k, None, k) for o, k in zip(offset, every))] = True
  return mask


def moving_band_masks(spatial_shape: Sequence[int], num_times: int, axis: int,
                      width: float, period: int, start: float = 0.0,
                      periodic: bool = True) -> np.ndarray:
  """[num_times, *spatial] bands of `width` grid cells sweeping one axis.

  At time t the band's centre is c_t = start + n * (t mod period) / period
  (n = size of `axis`); a cell j is inside when its distance to c_t (wrapped
  around if `periodic`) is below width / 2. With width >= n / period the bands
  of one period cover every cell.
  """
  shape = tuple(spatial_shape)
  if not 0 <= axis < len(shape):
    raise ValueError(f"axis {axis} out of range for shape {shape}")
  if period < 1 or width <= 0:
    raise ValueError(f"need period >= 1 and width > 0, got {period}, {width}")
  n = shape[axis]
  cells = np.arange(n)
  masks = np.zeros((num_times,) + shape, bool)
  for t in range(num_times):
    centre = start + n * (t % period) / period
    dist = np.abs(cells - centre)
    if periodic:
      dist = np.minimum(dist % n, n - dist % n)
    inside = dist < width / 2
    view = [np.newaxis] * len(shape)
    view[axis] = slice(None)
    masks[t] = np.broadcast_to(inside[tuple(view)], shape)
  return masks


# ------------------------------------------------------------ lat/lon grids --
class StationNetwork(NamedTuple):
  """Stations snapped to a lat/lon grid.

  mask: [lat, lon] observed grid points; indices: [S, 2] (i_lat, i_lon) of
  each requested station; num_distinct: distinct grid points (stations that
  snapped to the same point are merged).
  """
  mask: np.ndarray
  indices: np.ndarray
  num_distinct: int


def _check_latlon(lat: np.ndarray, lon: np.ndarray):
  lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
  if lat.ndim != 1 or lon.ndim != 1:
    raise ValueError("lat and lon must be 1-D coordinate arrays")
  if np.abs(lat).max() > 90:
    raise ValueError(f"latitudes must lie in [-90, 90], got max |lat| ="
                     f" {np.abs(lat).max()}")
  return lat, lon


def stations_from_latlon(lat: np.ndarray, lon: np.ndarray,
                         stations: Sequence[tuple[float, float]]
                         ) -> StationNetwork:
  """Snaps (lat, lon) stations to the nearest grid point on the sphere.

  Nearest = largest cos of the great-circle angle,
  cos(d) = sin(phi) sin(phi_j) + cos(phi) cos(phi_j) cos(lambda - lambda_j),
  so longitudes wrap around (359.9 deg is next to 0) on any lat order.
  """
  lat, lon = _check_latlon(lat, lon)
  stations = np.asarray(stations, np.float64).reshape(-1, 2)
  if stations.shape[0] == 0:
    raise ValueError("the station list is empty")
  if np.any(~np.isfinite(stations)) or np.abs(stations[:, 0]).max() > 90:
    raise ValueError("station latitudes must be finite and within [-90, 90]")
  phi, lam = np.deg2rad(lat), np.deg2rad(lon)
  s_phi, s_lam = np.deg2rad(stations[:, 0]), np.deg2rad(stations[:, 1])
  cos_d = (np.sin(s_phi)[:, None, None] * np.sin(phi)[None, :, None]
           + np.cos(s_phi)[:, None, None] * np.cos(phi)[None, :, None]
           * np.cos(s_lam[:, None, None] - lam[None, None, :]))
  flat = cos_d.reshape(stations.shape[0], -1).argmax(axis=1)
  indices = np.stack(np.unravel_index(flat, (lat.size, lon.size)), axis=1)
  mask = np.zeros((lat.size, lon.size), bool)
  mask[indices[:, 0], indices[:, 1]] = True
  return StationNetwork(mask, indices, int(mask.sum()))


def random_stations(lat: np.ndarray, lon: np.ndarray, num_stations: int,
                    seed: int, area_weighted: bool = True) -> StationNetwork:
  """Random stations: uniform on the sphere (area_weighted) or on the grid.

  Uniform on the sphere draws sin(latitude) ~ U(-1, 1), longitude ~ U(0, 360)
  and snaps to the grid, so polar rows of an equiangular grid are not
  oversampled; duplicates merge (see num_distinct). Otherwise the network is
  `num_stations` distinct grid points.
  """
  lat, lon = _check_latlon(lat, lon)
  if area_weighted:
    rng = np.random.default_rng(seed)
    s_lat = np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, num_stations)))
    s_lon = rng.uniform(0.0, EARTH_DEGREES, num_stations)
    return stations_from_latlon(lat, lon, np.stack([s_lat, s_lon], axis=1))
  mask = random_points_mask((lat.size, lon.size), num_stations, seed)
  indices = np.argwhere(mask)
  return StationNetwork(mask, indices, int(mask.sum()))


def satellite_swath_masks(lat: np.ndarray, lon: np.ndarray, num_times: int,
                          width_deg: float, revisit_steps: int,
                          direction: str = "zonal",
                          start_deg: float = 0.0) -> np.ndarray:
  """[num_times, lat, lon] swaths sweeping the globe once per revisit period.

  direction "zonal": a band of longitudes |lambda - c_t| < width/2 (wrapped)
  with c_t = start + 360 (t mod R) / R, like successive orbits of a polar
  orbiter; "meridional": a band of latitudes around c_t = start - 90 +
  180 (t mod R + 1/2) / R, i.e. R bands tiling pole to pole. Full coverage over
  R steps needs width >= 360 / R (zonal) or 180 / R (meridional).
  """
  lat, lon = _check_latlon(lat, lon)
  if revisit_steps < 1 or width_deg <= 0:
    raise ValueError(f"need revisit_steps >= 1 and width_deg > 0, got"
                     f" {revisit_steps}, {width_deg}")
  t = np.arange(num_times) % revisit_steps
  if direction == "zonal":
    centre = start_deg + EARTH_DEGREES * t / revisit_steps
    d = np.abs(lon[None, :] - centre[:, None]) % EARTH_DEGREES
    inside = np.minimum(d, EARTH_DEGREES - d) < width_deg / 2  # [T, lon]
    return np.broadcast_to(inside[:, None, :],
                           (num_times, lat.size, lon.size)).copy()
  if direction == "meridional":
    centre = start_deg - 90.0 + 180.0 * (t + 0.5) / revisit_steps
    inside = np.abs(lat[None, :] - centre[:, None]) < width_deg / 2
    return np.broadcast_to(inside[:, :, None],
                           (num_times, lat.size, lon.size)).copy()
  raise ValueError(f"direction must be 'zonal' or 'meridional', got"
                   f" {direction!r}")


# ------------------------------------------------------------------- times --
def observation_times(num_times: int, every: int = 1, phase: int = 0,
                      dropout: float = 0.0, seed: int = 0,
                      include_initial: bool = False) -> np.ndarray:
  """[num_times] bool: observed at t with t % every == phase, minus dropouts.

  Each scheduled time is dropped independently with probability `dropout`
  (instrument outages); t = 0 (the initial state) only if include_initial.
  """
  if every < 1:
    raise ValueError(f"every must be >= 1, got {every}")
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}")
  t = np.arange(num_times)
  times = (t % every) == (phase % every)
  if not include_initial:
    times &= t > 0
  if dropout > 0:
    times &= np.random.default_rng(seed).uniform(size=num_times) >= dropout
  return times


# ------------------------------------------------------------ observations --
def noise_std_per_channel(channels: Sequence[str],
                          noise_std: dict[str, float],
                          default: float | None = None) -> np.ndarray:
  """[C] noise stds from {variable or channel name: std}.

  A channel "temperature@850" takes the entry "temperature@850" if present,
  else "temperature"; otherwise `default` (ValueError if None).
  """
  out = []
  for channel in channels:
    base = channel.split("@")[0]
    value = noise_std.get(channel, noise_std.get(base, default))
    if value is None:
      raise ValueError(f"no noise std for channel {channel!r}; given for"
                       f" {sorted(noise_std)}")
    out.append(float(value))
  out = np.asarray(out, np.float32)
  if np.any(~np.isfinite(out)) or np.any(out <= 0):
    raise ValueError(f"noise stds must be positive and finite, got {out}")
  return out


def synthesize(truth: np.ndarray, spatial_mask: np.ndarray,
               time_mask: np.ndarray | None = None,
               noise_std: float | Sequence[float] | np.ndarray = 0.0,
               seed: int = 0, channel_mask: Sequence[bool] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """Observes a truth trajectory: (values, mask) in the dense layout.

  Args:
    truth: [T+1, *spatial, C]; NaN entries are never observed.
    spatial_mask: [*spatial] (fixed network) or [T+1, *spatial] (moving).
    time_mask: [T+1] observation times (default: all times but t = 0).
    noise_std: scalar or [C] sigma (0 = perfect observations).
    seed: seed of the noise.
    channel_mask: [C] observed channels (default: all).
  Returns:
    values [T+1, *spatial, C] float32 (0 where unobserved) and mask, same
    shape, float32 in {0, 1}.
  """
  truth = np.asarray(truth, np.float32)
  if truth.ndim < 3:
    raise ValueError(f"truth must be [time, *spatial, channel], got shape"
                     f" {truth.shape}")
  num_times, spatial = truth.shape[0], truth.shape[1:-1]
  num_ch = truth.shape[-1]
  spatial_mask = np.asarray(spatial_mask, bool)
  if spatial_mask.shape == spatial:
    spatial_mask = np.broadcast_to(spatial_mask, (num_times,) + spatial)
  elif spatial_mask.shape != (num_times,) + spatial:
    raise ValueError(f"spatial_mask shape {spatial_mask.shape} fits neither"
                     f" the grid {spatial} nor [time, *grid]"
                     f" {(num_times,) + spatial}")
  if time_mask is None:
    time_mask = observation_times(num_times)
  time_mask = np.asarray(time_mask, bool)
  if time_mask.shape != (num_times,):
    raise ValueError(f"time_mask must have shape ({num_times},), got"
                     f" {time_mask.shape}")
  channel_mask = (np.ones(num_ch, bool) if channel_mask is None
                  else np.asarray(channel_mask, bool))
  if channel_mask.shape != (num_ch,):
    raise ValueError(f"channel_mask must have shape ({num_ch},), got"
                     f" {channel_mask.shape}")
  sigma = np.asarray(noise_std, np.float32)
  if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape != (num_ch,)):
    raise ValueError(f"noise_std must be a scalar or have {num_ch} entries,"
                     f" got shape {sigma.shape}")
  if np.any(~np.isfinite(sigma)) or np.any(sigma < 0):
    raise ValueError(f"noise_std must be finite and >= 0, got {sigma}")
  mask = (time_mask.reshape((-1,) + (1,) * (truth.ndim - 1))
          & spatial_mask[..., None] & channel_mask & np.isfinite(truth))
  noise = np.random.default_rng(seed).standard_normal(truth.shape,
                                                      dtype=np.float32)
  values = np.where(mask, np.nan_to_num(truth) + sigma * noise, 0.0)
  return values.astype(np.float32), mask.astype(np.float32)


def to_observations(values: np.ndarray, mask: np.ndarray,
                    noise_std: float | np.ndarray) -> Observations:
  """Wraps synthesised arrays as the core's `Observations`.

  noise_std is the sigma_obs the controller's misfit uses; it must be > 0 even
  for perfect synthetic observations (choose the assumed error level).
  """
  return Observations.from_arrays(values, mask, noise_std=noise_std)
