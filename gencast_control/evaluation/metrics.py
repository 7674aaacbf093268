"""Forecast, ensemble, spectral and physics metrics with WeatherBench2 semantics.

WeatherBench2 (WB2; Rasp et al. 2024, arXiv 2308.15560) is not on PyPI, so its
estimators are implemented here as pure functions. Every function accepts numpy
or jax arrays and computes in the namespace of its inputs (jax.numpy when any
input is a jax array, so it can be jitted; numpy otherwise).

Conventions
- `weights` (optional) broadcast, numpy-style, against the array being averaged
  (the error field; for ensemble metrics the truth-shaped field). A weighted
  mean over `axes` is sum(w x) / sum(w), so weights need not be normalised.
  On the sphere use `area_weights` (placed on the latitude axis with
  `along_axis`); on flat periodic PDE grids use None (uniform).
- `axes` are the axes averaged over (of `truth`; None = all). Pass the spatial
  axes to keep time/channel axes, () for pointwise values.
- `time_axis` (optional) is averaged after the spatial mean. WB2's headline
  convention takes the square root after the time mean (sqrt of the time-mean
  MSE, the default here); `sqrt_before_time_mean=True` gives WB2's
  `*SqrtBeforeTimeAvg` variants (time mean of per-time RMSE).
- Ensemble metrics take the members on `ensemble_axis` (default 0, the xarray
  dim `sample`); `truth` has the ensemble array's shape without that axis.
- NaN propagates (as in WB2) except in `rank_histogram`, which rejects it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

Axes = int | Sequence[int] | None


# ----------------------------------------------------------------- helpers


def _xp(*arrays):
  """jax.numpy if any input is a jax array (or tracer), else numpy."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _as_float(x, xp):
  x = xp.asarray(x)
  if not xp.issubdtype(x.dtype, xp.floating):
    x = x.astype(xp.float32 if xp is jnp else np.float64)
  return x


def _axes(axes: Axes, ndim: int) -> tuple[int, ...]:
  if axes is None:
    return tuple(range(ndim))
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  if any(not -ndim <= a < ndim for a in axes):
    raise ValueError(f"axes {axes} out of range for an array of rank {ndim}")
  axes = tuple(a % ndim for a in axes)
  if len(set(axes)) != len(axes):
    raise ValueError(f"repeated axis in {axes}")
  return axes


def _check_pair(forecast, truth):
  xp = _xp(forecast, truth)
  forecast, truth = _as_float(forecast, xp), _as_float(truth, xp)
  if forecast.shape != truth.shape:
    raise ValueError(f"forecast shape {forecast.shape} does not match truth "
                     f"shape {truth.shape}")
  return forecast, truth, xp


def _check_ensemble(ensemble, truth, ensemble_axis: int, min_members: int):
  """Moves the members to axis 0 and checks shapes; returns (ens, truth, M)."""
  xp = _xp(ensemble, truth)
  ensemble, truth = _as_float(ensemble, xp), _as_float(truth, xp)
  if ensemble.ndim != truth.ndim + 1:
    raise ValueError(f"ensemble rank {ensemble.ndim} must be truth rank "
                     f"{truth.ndim} + 1 (members on axis {ensemble_axis})")
  ensemble = xp.moveaxis(ensemble, _axes(ensemble_axis, ensemble.ndim)[0], 0)
  if ensemble.shape[1:] != truth.shape:
    raise ValueError(f"ensemble shape without the member axis "
                     f"{ensemble.shape[1:]} does not match truth shape "
                     f"{truth.shape}")
  m = ensemble.shape[0]
  if m < min_members:
    raise ValueError(f"this estimator needs an ensemble of at least "
                     f"{min_members} members, got {m}")
  return ensemble, truth, m, xp


def _check_weights(weights, shape, xp):
  if weights is None:
    return None
  weights = _as_float(weights, xp)
  try:
    if np.broadcast_shapes(weights.shape, shape) != tuple(shape):
      raise ValueError
  except ValueError:
    raise ValueError(f"weights of shape {weights.shape} do not broadcast to "
                     f"the data shape {tuple(shape)}") from None
  if xp is np and (not np.all(np.isfinite(weights)) or np.any(weights < 0)
                   or not np.any(weights > 0)):
    raise ValueError("weights must be finite, >= 0 and not all zero")
  return xp.broadcast_to(weights, shape)


def _weighted_mean(x, weights, axes, xp):
  """sum(w x) / sum(w) over `axes` (keepdims), or the plain mean."""
  if weights is None:
    return xp.mean(x, axis=axes, keepdims=True)
  return (xp.sum(x * weights, axis=axes, keepdims=True)
          / xp.sum(weights, axis=axes, keepdims=True))


def _aggregate(x, weights, axes: Axes, time_axis: int | None, xp, *,
               sqrt: bool = False, sqrt_before_time_mean: bool = False):
  """Weighted mean over `axes`, then (optionally sqrt and) mean over time.

  Negative values are clipped to 0 before a square root (debiased MSEs can
  be slightly negative).
  """
  axes = _axes(axes, x.ndim)
  reduced = axes
  if time_axis is not None:
    t = _axes(time_axis, x.ndim)[0]
    if t in axes:
      raise ValueError(f"time_axis {time_axis} is also in axes {axes}")
    reduced = axes + (t,)
  weights = _check_weights(weights, x.shape, xp)
  out = _weighted_mean(x, weights, axes, xp)
  if sqrt and (sqrt_before_time_mean or time_axis is None):
    out, sqrt = xp.sqrt(xp.maximum(out, 0.0)), False
  if time_axis is not None:
    out = xp.mean(out, axis=t, keepdims=True)
  if sqrt:
    out = xp.sqrt(xp.maximum(out, 0.0))
  return xp.squeeze(out, axis=reduced)


# ------------------------------------------------------------ area weights


def area_weights(lat_degrees, method: Literal["cell_area", "cos"] = "cell_area"
                 ) -> np.ndarray:
  """Latitude weights proportional to grid-cell area, normalised to mean 1.

  WB2 (`get_lat_weights`): the cell of latitude phi_i is bounded by the
  midpoints to its neighbours, and by -90 / +90 at the ends; its area on the
  unit sphere per unit longitude is sin(upper_i) - sin(lower_i) (= 2 in total).
  Pole points thus get the polar-cap area (e.g. 1 - cos(d/2) on an
  equiangular grid of spacing d) instead of cos(+-90) = 0, and on an
  equiangular grid without poles the weights equal cos(phi_i) exactly
  (2 sin(d/2) cos(phi_i)). `method="cos"` gives plain cos(phi) weights (zero
  at the poles). Latitudes may be ascending or descending (weights follow the
  given order). Flat PDE grids need no weights: pass weights=None.
  """
  lat = np.asarray(lat_degrees, np.float64)
  if lat.ndim != 1 or lat.size < 2:
    raise ValueError(f"latitude must be 1-D with >= 2 points, got shape "
                     f"{lat.shape}")
  if not np.all(np.isfinite(lat)) or np.any(np.abs(lat) > 90):
    raise ValueError("latitudes must be finite and within [-90, 90] degrees")
  step = np.diff(lat)
  if not (np.all(step > 0) or np.all(step < 0)):
    raise ValueError("latitudes must be strictly monotonic")
  if method == "cos":
    w = np.cos(np.deg2rad(lat))
  elif method == "cell_area":
    phi = np.deg2rad(np.sort(lat))
    bounds = np.concatenate([[-np.pi / 2], (phi[:-1] + phi[1:]) / 2,
                             [np.pi / 2]])
    w = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    if step[0] < 0:
      w = w[::-1]
  else:
    raise ValueError(f"unknown method {method!r}; use 'cell_area' or 'cos'")
  w = np.maximum(w, 0.0)
  return w / w.mean()


def along_axis(weights, axis: int, ndim: int):
  """Reshapes 1-D `weights` to broadcast along `axis` of a rank-`ndim` array.

  E.g. along_axis(area_weights(lat), axis=-3, ndim=4) for [T, lat, lon, C].
  """
  axis = _axes(axis, ndim)[0]
  shape = [1] * ndim
  shape[axis] = -1
  return _xp(weights).reshape(weights, shape)


# ----------------------------------------------------- deterministic scores


def mse(forecast, truth, weights=None, axes: Axes = None,
        time_axis: int | None = None):
  """Mean squared error  sum w (f - y)^2 / sum w  over `axes` (then time).

  Unbiased for the expected squared error at the given points; WB2 `MSE`.
  """
  forecast, truth, xp = _check_pair(forecast, truth)
  return _aggregate((forecast - truth)**2, weights, axes, time_axis, xp)


def rmse(forecast, truth, weights=None, axes: Axes = None,
         time_axis: int | None = None, sqrt_before_time_mean: bool = False):
  """Root mean squared error, WB2 style: spatial mean first, then the root.

      RMSE = sqrt( 1/T sum_t  sum_i w_i (f_ti - y_ti)^2 / sum_i w_i )

  With `time_axis` the time mean is taken inside the root (WB2's headline
  scores; Rasp et al. 2024 eq. 1); `sqrt_before_time_mean=True` averages the
  per-time RMSE instead (WB2 `RMSESqrtBeforeTimeAvg`), which is smaller by
  Jensen's inequality. As a root of an unbiased MSE, RMSE is biased low
  (Jensen), negligibly so for large spatial samples.
  """
  forecast, truth, xp = _check_pair(forecast, truth)
  return _aggregate((forecast - truth)**2, weights, axes, time_axis, xp,
                    sqrt=True, sqrt_before_time_mean=sqrt_before_time_mean)


def bias(forecast, truth, weights=None, axes: Axes = None,
         time_axis: int | None = None):
  """Mean error  sum w (f - y) / sum w  (positive = forecast too high)."""
  forecast, truth, xp = _check_pair(forecast, truth)
  return _aggregate(forecast - truth, weights, axes, time_axis, xp)


def acc(forecast, truth, climatology, weights=None, axes: Axes = None):
  """Anomaly correlation coefficient (WB2 `ACC`), per remaining index.

      ACC = <f' y'> / sqrt(<f'^2> <y'^2>),   f' = f - c,  y' = y - c,

  with <.> the weighted mean over `axes` and c the climatology (broadcast
  against the fields). As in WB2 the anomalies are not re-centred on their
  spatial mean (the uncentred ACC); average per-time ACC over time yourself.
  A ratio of sample moments: consistent, slightly biased for small samples.
  """
  forecast, truth, xp = _check_pair(forecast, truth)
  climatology = _as_float(climatology, xp)
  try:
    np.broadcast_shapes(climatology.shape, truth.shape)
  except ValueError:
    raise ValueError(f"climatology shape {climatology.shape} does not "
                     f"broadcast to the field shape {truth.shape}") from None
  fa, ta = forecast - climatology, truth - climatology
  mean = lambda x: _aggregate(x, weights, axes, None, xp)  # noqa: E731
  return mean(fa * ta) / xp.sqrt(mean(fa**2) * mean(ta**2))


# --------------------------------------------------------- ensemble scores


def crps_skill(ensemble, truth, weights=None, axes: Axes = None,
               time_axis: int | None = None, ensemble_axis: int = 0):
  """Skill term of the CRPS, E|X - Y| ~ 1/M sum_i |X_i - y| (WB2 `CRPSSkill`).

  Unbiased for E|X - Y| for any M >= 1.
  """
  ens, truth, _, xp = _check_ensemble(ensemble, truth, ensemble_axis, 1)
  return _aggregate(xp.mean(xp.abs(ens - truth), axis=0), weights, axes,
                    time_axis, xp)


def _pointwise_spread(ens, m, xp):
  """1/(M (M-1)) sum_{i,j} |X_i - X_j| via the sorted members:

  sum_{i,j} |X_i - X_j| = 2 sum_k (2k - M - 1) X_(k), k = 1..M (Zamo & Naveau
  2018, app. B; WB2), O(M log M) instead of O(M^2).
  """
  k = np.arange(1, m + 1, dtype=np.float64)
  coef = (2 * k - m - 1).reshape((m,) + (1,) * (ens.ndim - 1))
  coef = xp.asarray(coef, ens.dtype)
  return 2 * xp.sum(coef * xp.sort(ens, axis=0), axis=0) / (m * (m - 1))


def crps_spread(ensemble, truth, weights=None, axes: Axes = None,
                time_axis: int | None = None, ensemble_axis: int = 0):
  """Spread term E|X - X'| ~ 1/(M (M-1)) sum_{i,j} |X_i - X_j| (WB2 `CRPSSpread`).

  The 1/(M (M-1)) normaliser (i != j pairs only) makes it unbiased for
  E|X - X'| (the 1/M^2 "PWM" version is biased low by the factor (M-1)/M).
  Needs M >= 2. `truth` is only used for its shape.
  """
  ens, truth, m, xp = _check_ensemble(ensemble, truth, ensemble_axis, 2)
  return _aggregate(_pointwise_spread(ens, m, xp), weights, axes, time_axis,
                    xp)


def crps_fair(ensemble, truth, weights=None, axes: Axes = None,
              time_axis: int | None = None, ensemble_axis: int = 0):
  """Fair CRPS (Ferro 2014; Zamo & Naveau 2018; WB2 `CRPS`):

      CRPS_fair = 1/M sum_i |X_i - y| - 1/(2 M (M-1)) sum_{i,j} |X_i - X_j|
                = crps_skill - crps_spread / 2.

  Unbiased for the CRPS of the distribution the M exchangeable members are
  drawn from, so its expectation does not depend on M (the plain estimator
  with 1/(2 M^2) is biased high by E|X - X'| / (2M) and favours small
  ensembles). The pair sum uses sorting, O(M log M). Needs M >= 2. Use
  axes=() for pointwise values.
  """
  ens, truth, m, xp = _check_ensemble(ensemble, truth, ensemble_axis, 2)
  point = (xp.mean(xp.abs(ens - truth), axis=0)
           - 0.5 * _pointwise_spread(ens, m, xp))
  return _aggregate(point, weights, axes, time_axis, xp)


def ensemble_mean_rmse(ensemble, truth, weights=None, axes: Axes = None,
                       time_axis: int | None = None, ensemble_axis: int = 0,
                       unbiased: bool = True,
                       sqrt_before_time_mean: bool = False):
  """RMSE of the ensemble mean; WB2 `DebiasedEnsembleMeanMSE` when unbiased.

  With xbar = 1/M sum_i X_i and s^2 = 1/(M-1) sum_i (X_i - xbar)^2 at each
  point:

      MSE_biased   = < (xbar - y)^2 >
      MSE_unbiased = < (xbar - y)^2 - s^2 / M >

  For iid members with mean mu and variance sigma^2, E(xbar - y)^2 =
  E(mu - y)^2 + sigma^2 / M, so the unbiased form estimates the MSE of the
  infinite-ensemble mean without bias (needs M >= 2). The result is the root
  of the (time-mean of the) spatial mean, clipped at 0 before the root.
  """
  ens, truth, m, xp = _check_ensemble(ensemble, truth, ensemble_axis,
                                      2 if unbiased else 1)
  sq = (xp.mean(ens, axis=0) - truth)**2
  if unbiased:
    sq = sq - xp.var(ens, axis=0, ddof=1) / m
  return _aggregate(sq, weights, axes, time_axis, xp, sqrt=True,
                    sqrt_before_time_mean=sqrt_before_time_mean)


def ensemble_variance(ensemble, weights=None, axes: Axes = None,
                      time_axis: int | None = None, ensemble_axis: int = 0):
  """Mean unbiased member variance < s^2 > (WB2 `EnsembleVariance`), M >= 2."""
  ens = _as_float(ensemble, _xp(ensemble))
  truth = _xp(ens).zeros(np.delete(ens.shape, ensemble_axis % ens.ndim))
  ens, _, _, xp = _check_ensemble(ens, truth, ensemble_axis, 2)
  return _aggregate(xp.var(ens, axis=0, ddof=1), weights, axes, time_axis, xp)


def spread_skill_ratio(ensemble, truth, weights=None, axes: Axes = None,
                       time_axis: int | None = None, ensemble_axis: int = 0,
                       unbiased: bool = True):
  """Spread-skill ratio: ensemble spread over RMSE of the ensemble mean.

      SSR = sqrt( c < s^2 > ) / sqrt( < (xbar - y)^2 > ),   c = (M+1)/M,

  with <.> the weighted spatial (then time) mean, s^2 the unbiased member
  variance, xbar the ensemble mean (WB2's spread / skill of
  `EnsembleVariance` and `EnsembleMeanMSE`, time means taken before the
  roots). For a perfectly reliable ensemble (truth exchangeable with the
  members) E(xbar - y)^2 = (M+1)/M sigma^2, so with c = (M+1)/M (Fortin et
  al. 2014; unbiased=True) the expected squared ratio is 1 for every M;
  unbiased=False uses c = 1 (ratio ~ sqrt(M/(M+1))). Needs M >= 2.
  """
  ens, truth, m, xp = _check_ensemble(ensemble, truth, ensemble_axis, 2)
  c = (m + 1) / m if unbiased else 1.0
  spread = _aggregate(xp.var(ens, axis=0, ddof=1), weights, axes, time_axis,
                      xp)
  skill = _aggregate((xp.mean(ens, axis=0) - truth)**2, weights, axes,
                     time_axis, xp)
  return xp.sqrt(c * spread / skill)


def rank_histogram(ensemble, truth, num_bins: int | None = None,
                   ensemble_axis: int = 0, seed: Any = 0,
                   weights=None) -> np.ndarray:
  """Counts of the truth's rank among the M members (Hamill 2001; WB2).

  The rank of y is #{i : X_i < y} in 0..M; ties (X_i == y) are broken
  uniformly at random, rank = #{X_i < y} + U{0..#ties}, using `seed` (an int,
  a numpy Generator or a jax PRNG key). For a reliable ensemble the M + 1
  bins are equally likely. `num_bins` must divide M + 1 (adjacent bins are
  merged, as in WB2). Returns int64 counts [num_bins] over all points; with
  `weights` (broadcast against the truth, e.g. area weights) each point
  counts its weight: float sums sum_{rank(y_i) = r} w_i.
  """
  ens, truth, m, _ = _check_ensemble(np.asarray(ensemble),
                                     np.asarray(truth), ensemble_axis, 1)
  if np.isnan(ens).any() or np.isnan(truth).any():
    raise ValueError("rank_histogram got NaN in the ensemble or the truth")
  num_bins = m + 1 if num_bins is None else int(num_bins)
  if num_bins < 1 or (m + 1) % num_bins:
    raise ValueError(f"num_bins={num_bins} must divide M + 1 = {m + 1}")
  below = np.sum(ens < truth, axis=0)
  ties = np.sum(ens == truth, axis=0)
  if isinstance(seed, jax.Array):
    u = np.asarray(jax.random.uniform(seed, truth.shape))
  else:
    u = np.random.default_rng(seed).uniform(size=truth.shape)
  rank = below + np.minimum(np.floor(u * (ties + 1)), ties).astype(np.int64)
  w = _check_weights(weights, truth.shape, np)
  counts = np.bincount(rank.ravel() // ((m + 1) // num_bins),
                       weights=None if w is None else w.ravel(),
                       minlength=num_bins)
  return counts.astype(np.int64) if w is None else counts


# ----------------------------------------------------------------- spectra


def energy_spectrum_1d(field, axis: int = -1,
                       domain_length: float = 2 * math.pi):
  """Energy spectrum along a periodic axis: (wavenumbers [K], E [..., K]).

  With u_hat_n = 1/N sum_j u_j exp(-2 pi i n j / N):
      E(0) = |u_hat_0|^2 / 2,   E(n) = |u_hat_n|^2 (both signs, 0 < n < N/2),
      E(N/2) = |u_hat_{N/2}|^2 / 2 (N even),
  so sum_n E(n) = mean(u^2) / 2 (Parseval). Wavenumbers are 2 pi n / L,
  n = 0..N//2; the spectrum axis is moved last. Compare WB2's
  `ZonalEnergySpectrum`, which omits the 1/2 and multiplies by L (a density).
  """
  xp = _xp(field)
  field = xp.moveaxis(_as_float(field, xp), _axes(axis, xp.ndim(field))[0], -1)
  n = field.shape[-1]
  power = xp.abs(xp.fft.rfft(field, axis=-1))**2 / n**2
  factor = np.ones(power.shape[-1])
  factor[1:(n + 1) // 2] = 2.0
  spectrum = 0.5 * power * xp.asarray(factor, power.dtype)
  return 2 * math.pi * np.arange(n // 2 + 1) / domain_length, spectrum


def energy_spectrum_2d(field, axes: tuple[int, int] = (-2, -1),
                       domain_length: float = 2 * math.pi):
  """Isotropic shell-summed energy spectrum of a square periodic field.

      E(k) = sum_{round(|n|) = k} |u_hat_n|^2 / 2,  u_hat = fft2(u) / N^2,

  over all shells k = 0..round(N / sqrt 2), so sum_k E(k) = mean(u^2) / 2
  exactly (Parseval); shells beyond N/2 are only partly filled by the square
  grid. Summing the spectra of the velocity components (u, v) gives the
  kinetic-energy spectrum of `systems.kolmogorov.energy_spectrum`. Returns
  (wavenumbers 2 pi k / L [K], E [..., K]); the two `axes` are removed.
  """
  xp = _xp(field)
  field = _as_float(field, xp)
  a = _axes(axes, field.ndim)
  if len(a) != 2:
    raise ValueError(f"axes must name two axes, got {axes}")
  field = xp.moveaxis(field, a, (-2, -1))
  n = field.shape[-1]
  if field.shape[-2] != n:
    raise ValueError(f"energy_spectrum_2d needs a square grid, got "
                     f"{field.shape[-2:]}")
  density = 0.5 * xp.abs(xp.fft.fft2(field))**2 / n**4
  k1 = np.fft.fftfreq(n, 1.0 / n)
  shell = np.rint(np.hypot(k1[:, None], k1[None, :])).astype(int).ravel()
  num_shells = int(shell.max()) + 1
  flat = density.reshape((-1, n * n))
  if xp is jnp:
    out = jax.ops.segment_sum(flat.T, jnp.asarray(shell), num_shells).T
  else:
    index = (np.arange(flat.shape[0])[:, None] * num_shells + shell).ravel()
    out = np.bincount(index, weights=flat.ravel(),
                      minlength=flat.shape[0] * num_shells)
  out = out.reshape(density.shape[:-2] + (num_shells,))
  return 2 * math.pi * np.arange(num_shells) / domain_length, out


def spectrum_error(forecast_spectrum, truth_spectrum, skip_mean_mode=True,
                   floor: float = 1e-12):
  """Mean absolute log10 ratio of two spectra over the last (wavenumber) axis.

      err = 1/K' sum_k |log10(E_f(k) / E_t(k))|    (0 iff equal; 1 = a decade)

  The k = 0 mode (the spatial mean, often zero) is skipped by default. Both
  spectra are floored at `floor` times the truth's largest value so empty
  shells give a finite number. A deterministic distance, not an estimator.
  """
  f, t, xp = _check_pair(forecast_spectrum, truth_spectrum)
  if skip_mean_mode:
    f, t = f[..., 1:], t[..., 1:]
  if f.shape[-1] == 0:
    raise ValueError("spectrum_error needs at least one wavenumber bin")
  tiny = floor * xp.max(t, axis=-1, keepdims=True) + np.finfo(np.float32).tiny
  ratio = xp.maximum(f, tiny) / xp.maximum(t, tiny)
  return xp.mean(xp.abs(xp.log10(ratio)), axis=-1)


# ----------------------------------------------------------------- physics


def total_variation_1d(u, axis: int = -1):
  """Periodic total variation TV(u) = sum_i |u_{i+1} - u_i| (u_N = u_0)."""
  xp = _xp(u)
  u = _as_float(u, xp)
  axis = _axes(axis, u.ndim)[0]
  return xp.sum(xp.abs(xp.roll(u, -1, axis=axis) - u), axis=axis)


def enstrophy_2d(vorticity, axes: tuple[int, int] = (-2, -1)):
  """Enstrophy per unit area Z = <omega^2> / 2 (mean over the grid `axes`)."""
  xp = _xp(vorticity)
  vorticity = _as_float(vorticity, xp)
  return 0.5 * xp.mean(vorticity**2, axis=_axes(axes, vorticity.ndim))


def dissipation_2d(vorticity, nu: float, axes: tuple[int, int] = (-2, -1)):
  """Viscous energy dissipation rate eps = nu <|grad u|^2> = 2 nu Z.

  Exact for periodic incompressible flow, where <|grad u|^2> = <omega^2>.
  """
  if not (nu >= 0 and math.isfinite(nu)):
    raise ValueError(f"nu must be finite and >= 0, got {nu!r}")
  return 2.0 * nu * enstrophy_2d(vorticity, axes)


def relative_error(forecast_value, truth_value):
  """|a_f - a_t| / |a_t| elementwise (inf where a_t = 0 and a_f != a_t)."""
  f, t, xp = _check_pair(forecast_value, truth_value)
  return xp.abs(f - t) / xp.abs(t)


def total_variation_error(forecast, truth, axis: int = -1):
  """Relative error of the periodic total variation (KS sharpness)."""
  _check_pair(forecast, truth)
  return relative_error(total_variation_1d(forecast, axis),
                        total_variation_1d(truth, axis))


def enstrophy_error(forecast_vorticity, truth_vorticity,
                    axes: tuple[int, int] = (-2, -1)):
  """Relative error of the enstrophy; equals that of the dissipation rate
  (eps = 2 nu Z at a fixed nu)."""
  _check_pair(forecast_vorticity, truth_vorticity)
  return relative_error(enstrophy_2d(forecast_vorticity, axes),
                        enstrophy_2d(truth_vorticity, axes))


# ----------------------------------------------------------------- xarray


def xarray_metric(metric: Callable[..., Any], forecast: xr.DataArray,
                  truth: xr.DataArray, dims: Sequence[str],
                  ensemble_dim: str | None = "sample",
                  lat_dim: str | None = None, time_dim: str | None = None,
                  **kwargs) -> xr.DataArray:
  """Applies a (forecast, truth) metric of this module to DataArrays by name.

  `dims` are averaged (weighted by `area_weights` of the `lat_dim`
  coordinate if given), `time_dim` is passed as `time_axis`; the ensemble
  metrics get the members from `ensemble_dim` (ignored when `forecast` lacks
  it). Dimensions not reduced are kept, in `truth`'s order.
  """
  missing = [d for d in [*dims, lat_dim, time_dim] if d is not None and
             d not in truth.dims]
  if missing:
    raise ValueError(f"dims {missing} not in truth dims {truth.dims}")
  order = list(truth.dims)
  has_members = ensemble_dim is not None and ensemble_dim in forecast.dims
  f_dims = [ensemble_dim, *order] if has_members else order
  if set(forecast.dims) != set(f_dims):
    raise ValueError(f"forecast dims {forecast.dims} do not match {f_dims}")
  forecast, truth = xr.align(forecast.transpose(*f_dims), truth, join="exact")
  if lat_dim is not None:
    kwargs["weights"] = along_axis(area_weights(truth[lat_dim].values),
                                   order.index(lat_dim), len(order))
  if time_dim is not None:
    kwargs["time_axis"] = order.index(time_dim)
  value = metric(forecast.values, truth.values,
                 axes=[order.index(d) for d in dims], **kwargs)
  kept = [d for d in order if d not in dims and d != time_dim]
  return xr.DataArray(np.asarray(value), dims=kept,
                      coords={d: truth[d] for d in kept if d in truth.coords})
