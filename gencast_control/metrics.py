"""Forecast and ensemble metrics with WeatherBench2 semantics.

WeatherBench2 (Rasp et al. 2024, arXiv 2308.15560) is not on PyPI, so its
estimators are implemented here on plain arrays. Conventions: the ensemble is
the leading axis of `ensemble` ([M, ...]); `truth` has the remaining shape;
spatial means use optional weights (latitude-area weights on the sphere, none
on flat PDE grids) broadcast against the trailing axes.
"""

from __future__ import annotations

import numpy as np


def _check(forecast, truth):
  forecast, truth = np.asarray(forecast), np.asarray(truth)
  if forecast.shape != truth.shape:
    raise ValueError(f"forecast shape {forecast.shape} does not match truth"
                     f" shape {truth.shape}")
  return forecast, truth


def _check_ensemble(ensemble, truth):
  ensemble, truth = np.asarray(ensemble), np.asarray(truth)
  if ensemble.shape[1:] != truth.shape:
    raise ValueError(f"ensemble shape {ensemble.shape} must be [M] + truth"
                     f" shape {truth.shape}")
  return ensemble, truth


def _mean(x, weights=None, axis=None):
  if weights is None:
    return np.mean(x, axis=axis)
  w = np.broadcast_to(np.asarray(weights, np.float64), x.shape)
  return np.sum(x * w, axis=axis) / np.sum(w, axis=axis)


def latitude_weights(lat_degrees) -> np.ndarray:
  """Cell-area weights of an equiangular latitude grid, mean 1 (WB2).

  The cell of latitude phi_i spans [phi_i - d/2, phi_i + d/2] clipped to
  [-90, 90]; its area is proportional to sin(upper) - sin(lower). Pole points
  thus get the small polar-cap area instead of cos(90) = 0.
  """
  lat = np.asarray(lat_degrees, np.float64)
  if lat.ndim != 1 or lat.size < 2:
    raise ValueError("latitude must be a 1-D array of at least 2 points")
  d = np.abs(np.diff(lat)).mean()
  upper = np.deg2rad(np.clip(lat + d / 2, -90, 90))
  lower = np.deg2rad(np.clip(lat - d / 2, -90, 90))
  w = np.abs(np.sin(upper) - np.sin(lower))
  return w / w.mean()


def mse(forecast, truth, weights=None, axis=None) -> np.ndarray:
  """Weighted mean squared error over `axis` (all axes if None)."""
  forecast, truth = _check(forecast, truth)
  return _mean((forecast - truth)**2, weights, axis)


def rmse(forecast, truth, weights=None, axis=None) -> np.ndarray:
  """sqrt of the weighted spatial mean squared error (WB2: mean, then sqrt).

  With axis = the spatial axes this is the per-time RMSE; averaging it over
  time afterwards gives WB2's "time-mean of RMSE" convention.
  """
  return np.sqrt(mse(forecast, truth, weights, axis))


def acc(forecast, truth, climatology, weights=None, axis=None) -> np.ndarray:
  """Anomaly correlation coefficient (WB2's ACC; no mean-anomaly removal).

  ACC = sum w f' t' / sqrt(sum w f'^2 sum w t'^2), f' = f - clim, t' = t - clim.
  """
  forecast, truth = _check(forecast, truth)
  fa, ta = forecast - climatology, truth - climatology
  return _mean(fa * ta, weights, axis) / np.sqrt(
      _mean(fa**2, weights, axis) * _mean(ta**2, weights, axis))


def crps_fair(ensemble, truth) -> np.ndarray:
  """Fair (unbiased) CRPS per point (Ferro 2014; Zamo & Naveau 2018):

      CRPS_fair = 1/M sum_i |X_i - y| - 1/(2 M (M-1)) sum_{i,j} |X_i - X_j|.

  Unbiased for the CRPS of the distribution the members are drawn from (the
  plain "PWM" estimator with 1/(2 M^2) favours small ensembles). The spread
  term uses the sorted-members identity sum_{i,j}|X_i - X_j| =
  2 sum_k (2k - M - 1) X_(k) (k = 1..M), O(M log M) instead of O(M^2).
  """
  ensemble, truth = _check_ensemble(ensemble, truth)
  m = ensemble.shape[0]
  if m < 2:
    raise ValueError("fair CRPS needs an ensemble of at least 2 members")
  skill = np.mean(np.abs(ensemble - truth[None]), axis=0)
  sorted_ens = np.sort(ensemble, axis=0)
  k = np.arange(1, m + 1).reshape((m,) + (1,) * truth.ndim)
  pair_sum = 2 * np.sum((2 * k - m - 1) * sorted_ens, axis=0)
  return skill - pair_sum / (2 * m * (m - 1))


def ensemble_mean_rmse(ensemble, truth, weights=None, unbiased=True):
  """RMSE of the ensemble mean; WB2's unbiased variant subtracts var/M:

      MSE_unbiased = mean w (mean_i X_i - y)^2 - mean w s^2 / M,

  with s^2 the unbiased member variance, an unbiased estimate of the MSE of
  the infinite-ensemble mean. Clipped at 0 before the square root.
  """
  ensemble, truth = _check_ensemble(ensemble, truth)
  m = ensemble.shape[0]
  err = _mean((ensemble.mean(0) - truth)**2, weights)
  if unbiased:
    if m < 2:
      raise ValueError("the unbiased estimate needs at least 2 members")
    err = err - _mean(ensemble.var(0, ddof=1), weights) / m
  return float(np.sqrt(max(err, 0.0)))


def spread_skill_ratio(ensemble, truth, weights=None) -> float:
  """sqrt(mean unbiased variance) / RMSE of the ensemble mean (WB2).

  With the (M+1)/M factor on the spread (Fortin et al. 2014) a perfectly
  reliable ensemble has an expected ratio of 1 for any M:

      SSR = sqrt((M+1)/M * mean w s^2) / sqrt(mean w (mean_i X_i - y)^2).
  """
  ensemble, truth = _check_ensemble(ensemble, truth)
  m = ensemble.shape[0]
  if m < 2:
    raise ValueError("spread needs at least 2 members")
  spread = np.sqrt((m + 1) / m * _mean(ensemble.var(0, ddof=1), weights))
  skill = np.sqrt(_mean((ensemble.mean(0) - truth)**2, weights))
  return float(spread / skill)


def rank_histogram(ensemble, truth, seed: int = 0) -> np.ndarray:
  """Counts of the truth's rank among the M members (M + 1 bins).

  Ties are broken uniformly at random (Hamill 2001).
  """
  ensemble, truth = _check_ensemble(ensemble, truth)
  m = ensemble.shape[0]
  below = np.sum(ensemble < truth[None], axis=0)
  ties = np.sum(ensemble == truth[None], axis=0)
  rng = np.random.default_rng(seed)
  rank = below + np.floor(rng.uniform(size=truth.shape) * (ties + 1)).astype(
      int)
  return np.bincount(rank.ravel(), minlength=m + 1)


def energy_spectrum_1d(field, axis: int = -1) -> np.ndarray:
  """E(k) = |u_hat_k|^2 / N^2, doubled for 0 < k < N/2, k = 0..N/2.

  Parseval: sum_k E(k) = mean(u^2) over the axis.
  """
  field = np.asarray(field)
  n = field.shape[axis]
  spec = np.abs(np.fft.rfft(field, axis=axis))**2 / n**2
  factor = np.full(spec.shape[axis], 2.0)
  factor[0] = 1.0
  if n % 2 == 0:
    factor[-1] = 1.0
  shape = [1] * spec.ndim
  shape[axis] = -1
  return spec * factor.reshape(shape)


def energy_spectrum_2d(field) -> np.ndarray:
  """Isotropic shell-summed spectrum of [..., X, Y] fields, shells k = 0..N/2.

  E(k) = sum over |kappa| in [k - 1/2, k + 1/2) of |u_hat|^2 / (X Y)^2; modes
  beyond the last shell (corners) are dropped, so sum_k E(k) <= mean(u^2).
  """
  field = np.asarray(field)
  nx, ny = field.shape[-2:]
  spec = np.abs(np.fft.fft2(field))**2 / (nx * ny)**2
  kx = np.fft.fftfreq(nx, 1.0 / nx)
  ky = np.fft.fftfreq(ny, 1.0 / ny)
  shell = np.rint(np.hypot(kx[:, None], ky[None, :])).astype(int)
  kmax = min(nx, ny) // 2
  out = np.zeros(field.shape[:-2] + (kmax + 1,))
  for k in range(kmax + 1):
    out[..., k] = np.sum(spec * (shell == k), axis=(-2, -1))
  return out


def spectrum_error(forecast_spectrum, truth_spectrum, eps=1e-12) -> float:
  """Mean absolute log10 ratio of two spectra (0 = identical)."""
  f, t = _check(forecast_spectrum, truth_spectrum)
  return float(np.mean(np.abs(np.log10((f + eps) / (t + eps)))))


def total_variation_1d(u, axis: int = -1) -> np.ndarray:
  """Periodic total variation sum_i |u_{i+1} - u_i|."""
  u = np.asarray(u)
  return np.sum(np.abs(np.roll(u, -1, axis=axis) - u), axis=axis)


def enstrophy_2d(vorticity) -> np.ndarray:
  """Mean enstrophy Z = 1/2 mean(omega^2) over the last two axes."""
  return 0.5 * np.mean(np.asarray(vorticity)**2, axis=(-2, -1))
