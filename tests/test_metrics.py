"""Metrics against brute-force formulas, Monte Carlo expectations, invariants."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from gencast_control.evaluation import metrics

RNG = np.random.default_rng(0)


def _loop_weighted_mean(x, w):
  num = den = 0.0
  for idx in itertools.product(*map(range, x.shape)):
    num += w[idx] * x[idx]
    den += w[idx]
  return num / den


# ------------------------------------------------------------ area weights


def test_area_weights_cell_area_with_poles_matches_cap_and_band_areas():
  lat = np.linspace(-90, 90, 19)  # 10 deg grid with poles
  w = metrics.area_weights(lat)
  assert w.shape == (19,) and math.isclose(w.mean(), 1.0)
  # Unnormalised cell areas (per unit longitude) sum to 2 on the unit sphere.
  d = np.deg2rad(5.0)
  cap = 1 - np.cos(d)                          # pole cell [85, 90]
  band = np.sin(np.deg2rad(5)) - np.sin(-d)     # equator cell [-5, 5]
  np.testing.assert_allclose(w[0] / w.sum() * 2, cap, rtol=1e-12)
  np.testing.assert_allclose(w[9] / w.sum() * 2, band, rtol=1e-12)
  assert w[0] > 0 and w[-1] == pytest.approx(w[0])
  assert metrics.area_weights(lat, method="cos")[0] == pytest.approx(0, abs=1e-12)


def test_area_weights_without_poles_equal_cos_and_follow_order():
  lat = np.arange(-87.5, 90, 5.0)  # equiangular, no poles
  np.testing.assert_allclose(metrics.area_weights(lat),
                             metrics.area_weights(lat, method="cos"),
                             rtol=1e-12)
  np.testing.assert_allclose(metrics.area_weights(lat[::-1]),
                             metrics.area_weights(lat)[::-1], rtol=1e-12)


@pytest.mark.parametrize("lat", [[0.0], [10.0, 0.0, 20.0], [0.0, 0.0, 1.0],
                                 [0.0, 95.0], [[0.0, 1.0]], [0.0, np.nan]])
def test_area_weights_rejects_bad_latitudes(lat):
  with pytest.raises(ValueError):
    metrics.area_weights(lat)


# ----------------------------------------------------- deterministic scores


def test_rmse_mse_bias_match_loops_with_weights_and_time():
  f, y = RNG.normal(size=(2, 3, 4, 5, 2))
  lat_w = metrics.area_weights(np.linspace(-60, 60, 4))
  w = metrics.along_axis(lat_w, 1, 4)  # [T, lat, lon, C]
  w_full = np.broadcast_to(w, f.shape)
  per_time = np.array([[_loop_weighted_mean((f - y)[t, ..., c]**2,
                                            w_full[t, ..., c])
                        for c in range(2)] for t in range(3)])
  got = metrics.mse(f, y, w, axes=(1, 2))
  np.testing.assert_allclose(got, per_time, rtol=1e-12)
  np.testing.assert_allclose(metrics.rmse(f, y, w, axes=(1, 2)),
                             np.sqrt(per_time), rtol=1e-12)
  np.testing.assert_allclose(
      metrics.rmse(f, y, w, axes=(1, 2), time_axis=0),
      np.sqrt(per_time.mean(0)), rtol=1e-12)
  np.testing.assert_allclose(
      metrics.rmse(f, y, w, axes=(1, 2), time_axis=0,
                   sqrt_before_time_mean=True),
      np.sqrt(per_time).mean(0), rtol=1e-12)
  bias = np.array([_loop_weighted_mean((f - y)[..., c], w_full[..., c])
                   for c in range(2)])
  np.testing.assert_allclose(metrics.bias(f, y, w, axes=(0, 1, 2)), bias,
                             rtol=1e-12)
  # Unnormalised weights give the same answer; no weights = plain mean.
  np.testing.assert_allclose(metrics.mse(f, y, 7 * w), metrics.mse(f, y, w))
  assert metrics.mse(f, y) == pytest.approx(np.mean((f - y)**2))


def test_deterministic_scores_reject_mismatched_inputs():
  a = np.zeros((3, 4))
  with pytest.raises(ValueError, match="shape"):
    metrics.rmse(a, np.zeros((4, 3)))
  with pytest.raises(ValueError, match="broadcast"):
    metrics.rmse(a, a, weights=np.ones(3))
  with pytest.raises(ValueError, match="weights"):
    metrics.rmse(a, a, weights=-np.ones(4))
  with pytest.raises(ValueError, match="time_axis"):
    metrics.rmse(a, a, axes=(0, 1), time_axis=0)
  with pytest.raises(ValueError, match="out of range"):
    metrics.rmse(a, a, axes=(2,))


def test_acc_brute_force_and_limits():
  clim = RNG.normal(size=(4, 6))
  f, y = clim + RNG.normal(size=(2, 3, 4, 6))
  w = metrics.along_axis(metrics.area_weights(np.linspace(-45, 45, 4)), 1, 3)
  wf = np.broadcast_to(w, f.shape)
  want = []
  for t in range(3):
    fa, ya, wt = f[t] - clim, y[t] - clim, wf[t]
    want.append(np.sum(wt * fa * ya) / np.sqrt(np.sum(wt * fa**2)
                                               * np.sum(wt * ya**2)))
  np.testing.assert_allclose(metrics.acc(f, y, clim, w, axes=(1, 2)), want,
                             rtol=1e-12)
  np.testing.assert_allclose(metrics.acc(y, y, clim, w, axes=(1, 2)), 1.0)
  np.testing.assert_allclose(metrics.acc(2 * clim - y, y, clim, w,
                                         axes=(1, 2)), -1.0)
  with pytest.raises(ValueError, match="climatology"):
    metrics.acc(f, y, np.zeros((5,)))


# --------------------------------------------------------- ensemble scores


def _crps_brute(ens, y):
  m = ens.shape[0]
  skill = np.mean([abs(ens[i] - y) for i in range(m)], axis=0)
  pairs = sum(abs(ens[i] - ens[j]) for i in range(m) for j in range(m))
  return skill, pairs / (m * (m - 1)), skill - pairs / (2 * m * (m - 1))


@pytest.mark.parametrize("m", [2, 3, 6])
def test_crps_sorting_matches_double_loop(m):
  ens = RNG.normal(size=(m, 3, 5))
  ens[1, 0, 0] = ens[0, 0, 0]  # a tie
  y = RNG.normal(size=(3, 5))
  skill, spread, fair = _crps_brute(ens, y)
  np.testing.assert_allclose(metrics.crps_fair(ens, y, axes=()), fair,
                             rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(metrics.crps_skill(ens, y, axes=()), skill)
  np.testing.assert_allclose(metrics.crps_spread(ens, y, axes=()), spread,
                             rtol=1e-12)
  w = np.array([1.0, 2.0, 3.0, 0.5, 1.0])
  np.testing.assert_allclose(metrics.crps_fair(ens, y, w, axes=1),
                             (fair * w).sum(1) / w.sum(), rtol=1e-12)
  # Members on another axis.
  np.testing.assert_allclose(
      metrics.crps_fair(np.moveaxis(ens, 0, -1), y, ensemble_axis=-1),
      fair.mean(), rtol=1e-12)


def test_fair_crps_expectation_does_not_depend_on_ensemble_size():
  # Members and truth iid N(0, 1): CRPS = 2/sqrt(pi) - 1/sqrt(pi) = 1/sqrt(pi).
  n = 40_000
  target = 1 / math.sqrt(math.pi)
  for m in (2, 3, 10):
    ens, y = RNG.normal(size=(m, n)), RNG.normal(size=n)
    assert float(metrics.crps_fair(ens, y)) == pytest.approx(target, abs=0.012)
    # The plain 1/(2 M^2) estimator is biased high by E|X - X'| / (2M).
    spread = float(metrics.crps_spread(ens, y))
    plain = float(metrics.crps_skill(ens, y)) - 0.5 * spread * (m - 1) / m
    assert plain - target == pytest.approx(2 / math.sqrt(math.pi) / (2 * m),
                                           abs=0.015)


def test_ensemble_mean_rmse_and_spread_skill_brute_force():
  ens, y = RNG.normal(size=(4, 3, 5)), RNG.normal(size=(3, 5))
  w = np.array([0.5, 1.0, 2.0, 1.0, 0.5])
  m = 4
  xbar = ens.sum(0) / m
  s2 = ((ens - xbar)**2).sum(0) / (m - 1)
  wmean = lambda a: (a * w).sum(-1) / w.sum()  # noqa: E731
  sq, var = wmean((xbar - y)**2), wmean(s2)
  np.testing.assert_allclose(
      metrics.ensemble_mean_rmse(ens, y, w, axes=1, unbiased=False),
      np.sqrt(sq))
  np.testing.assert_allclose(
      metrics.ensemble_mean_rmse(ens, y, w, axes=1),
      np.sqrt(np.maximum(sq - var / m, 0)))
  np.testing.assert_allclose(metrics.ensemble_variance(ens, w, axes=1), var)
  np.testing.assert_allclose(
      metrics.spread_skill_ratio(ens, y, w, axes=1),
      np.sqrt((m + 1) / m * var / sq))
  np.testing.assert_allclose(
      metrics.spread_skill_ratio(ens, y, w, axes=1, time_axis=0),
      np.sqrt((m + 1) / m * var.mean() / sq.mean()))
  np.testing.assert_allclose(
      metrics.spread_skill_ratio(ens, y, w, axes=1, unbiased=False),
      np.sqrt(var / sq))


def test_unbiased_corrections_by_monte_carlo():
  # Calibrated: truth and members iid N(mu, sigma^2) at each point.
  n, sigma = 40_000, 2.0
  for m in (2, 3, 8):
    mu = RNG.normal(size=n) * 5
    ens = mu + sigma * RNG.normal(size=(m, n))
    y = mu + sigma * RNG.normal(size=n)
    assert float(metrics.spread_skill_ratio(ens, y)) == pytest.approx(
        1.0, abs=0.03)
    assert float(metrics.spread_skill_ratio(ens, y, unbiased=False)) == (
        pytest.approx(math.sqrt(m / (m + 1)), abs=0.03))
    # Unbiased ensemble-mean RMSE estimates the infinite-ensemble RMSE sigma.
    assert float(metrics.ensemble_mean_rmse(ens, y)) == pytest.approx(
        sigma, rel=0.03)
    assert float(metrics.ensemble_mean_rmse(ens, y, unbiased=False)) == (
        pytest.approx(sigma * math.sqrt(1 + 1 / m), rel=0.03))


def test_ensemble_metrics_reject_bad_shapes_and_small_ensembles():
  y = np.zeros((3, 4))
  for fn in (metrics.crps_fair, metrics.crps_spread,
             metrics.spread_skill_ratio, metrics.ensemble_mean_rmse):
    with pytest.raises(ValueError, match="at least 2"):
      fn(np.zeros((1, 3, 4)), y)
    with pytest.raises(ValueError, match="does not match"):
      fn(np.zeros((5, 4, 3)), y)
    with pytest.raises(ValueError, match="rank"):
      fn(np.zeros((3, 4)), y)
  assert float(metrics.crps_skill(np.ones((1, 3, 4)), y)) == 1.0
  with pytest.raises(ValueError, match="num_bins"):
    metrics.rank_histogram(np.zeros((4, 3, 4)), y, num_bins=3)
  with pytest.raises(ValueError, match="NaN"):
    metrics.rank_histogram(np.full((4, 3, 4), np.nan), y)


def test_rank_histogram_flat_when_calibrated_and_extreme_when_biased():
  m, n = 5, 30_000
  ens, y = RNG.normal(size=(m, n)), RNG.normal(size=n)
  counts = metrics.rank_histogram(ens, y)
  assert counts.shape == (m + 1,) and counts.sum() == n
  expected = n / (m + 1)
  chi2 = np.sum((counts - expected)**2 / expected)
  assert chi2 < 25.0  # chi-square, 5 dof: p ~ 1e-4
  biased = metrics.rank_histogram(ens, y + 10.0)
  assert biased[-1] == n and biased[:-1].sum() == 0
  assert metrics.rank_histogram(ens, y - 10.0)[0] == n
  merged = metrics.rank_histogram(ens, y, num_bins=3)
  np.testing.assert_array_equal(merged, counts.reshape(3, 2).sum(1))


def test_rank_histogram_breaks_ties_at_random():
  # Truth equal to all members: every rank 0..M is equally likely.
  m, n = 3, 20_000
  counts = metrics.rank_histogram(np.zeros((m, n)), np.zeros(n), seed=1)
  assert np.all(np.abs(counts / n - 1 / (m + 1)) < 0.015)
  key_counts = metrics.rank_histogram(np.zeros((m, n)), np.zeros(n),
                                      seed=jax.random.PRNGKey(0))
  assert np.all(np.abs(key_counts / n - 1 / (m + 1)) < 0.015)


def test_rank_histogram_weights_count_each_point_by_its_weight():
  ens, y = RNG.normal(size=(3, 4, 5)), RNG.normal(size=(4, 5))
  w = np.linspace(0.5, 2.0, 5)
  want = np.zeros(4)
  for i in range(4):
    for j in range(5):
      want[np.sum(ens[:, i, j] < y[i, j])] += w[j]
  np.testing.assert_allclose(metrics.rank_histogram(ens, y, weights=w), want,
                             rtol=1e-12)
  unweighted = metrics.rank_histogram(ens, y)
  assert unweighted.dtype == np.int64 and unweighted.sum() == 20
  np.testing.assert_allclose(metrics.rank_histogram(ens, y,
                                                    weights=np.ones(5)),
                             unweighted)


def test_metrics_run_under_jit_and_match_numpy():
  ens, y = RNG.normal(size=(4, 6, 8)), RNG.normal(size=(6, 8))
  w = np.linspace(0.5, 1.5, 6)[:, None]
  for fn in (metrics.crps_fair, metrics.spread_skill_ratio,
             metrics.ensemble_mean_rmse):
    got = jax.jit(lambda e, t, fn=fn: fn(e, t, w, axes=1))(
        jnp.asarray(ens, jnp.float32), jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(got, fn(ens, y, w, axes=1), rtol=1e-4)
  got = jax.jit(lambda a, b: metrics.rmse(a, b, w))(jnp.asarray(ens[0]),
                                                     jnp.asarray(y))
  np.testing.assert_allclose(got, metrics.rmse(ens[0], y, w), rtol=1e-5)


# ----------------------------------------------------------------- spectra


@pytest.mark.parametrize("n", [16, 15])
def test_energy_spectrum_1d_parseval_and_single_mode(n):
  u = RNG.normal(size=(3, n, 2))
  k, e = metrics.energy_spectrum_1d(u, axis=1, domain_length=22.0)
  assert e.shape == (3, 2, n // 2 + 1)
  np.testing.assert_allclose(e.sum(-1), 0.5 * np.mean(u**2, axis=1),
                             rtol=1e-12)
  np.testing.assert_allclose(k[1], 2 * np.pi / 22.0)
  x = np.arange(n) * 22.0 / n
  _, e1 = metrics.energy_spectrum_1d(3 * np.sin(2 * np.pi * 2 * x / 22.0),
                                     domain_length=22.0)
  np.testing.assert_allclose(e1[2], 0.5 * 4.5, rtol=1e-12)  # <u^2>/2 = 9/4
  assert np.sum(np.delete(e1, 2)) < 1e-20


def test_energy_spectrum_2d_parseval_single_mode_and_kolmogorov_match():
  u = RNG.normal(size=(2, 12, 12))
  k, e = metrics.energy_spectrum_2d(u)
  np.testing.assert_allclose(e.sum(-1), 0.5 * np.mean(u**2, axis=(-2, -1)),
                             rtol=1e-12)
  x = 2 * np.pi * np.arange(12) / 12
  mode = np.cos(3 * x)[:, None] * np.cos(4 * x)[None, :]  # |k| = 5
  _, e_mode = metrics.energy_spectrum_2d(mode)
  assert e_mode[5] == pytest.approx(0.5 * 0.25) and k[5] == pytest.approx(5)
  assert np.sum(np.delete(e_mode, 5)) < 1e-20
  # Channel-last fields: the grid axes are given explicitly; jax path agrees.
  _, e_cl = metrics.energy_spectrum_2d(np.moveaxis(u, 0, -1), axes=(0, 1))
  np.testing.assert_allclose(e_cl, e, rtol=1e-12)
  _, e_jax = metrics.energy_spectrum_2d(jnp.asarray(u, jnp.float32))
  np.testing.assert_allclose(e_jax, e, rtol=1e-4, atol=1e-8)
  # Kinetic-energy spectrum of the Kolmogorov module = sum over (u, v).
  from gencast_control.systems import kolmogorov
  omega = RNG.normal(size=(16, 16))
  omega -= omega.mean()
  vel = np.asarray(kolmogorov.velocity_from_vorticity(jnp.asarray(omega)))
  _, ref = kolmogorov.energy_spectrum(jnp.asarray(omega))
  _, ours = metrics.energy_spectrum_2d(vel, axes=(0, 1))
  np.testing.assert_allclose(ours.sum(0), np.asarray(ref), rtol=1e-4,
                             atol=1e-9)
  with pytest.raises(ValueError, match="square"):
    metrics.energy_spectrum_2d(np.zeros((4, 6)))


def test_spectrum_error():
  e = np.array([0.0, 1.0, 0.1, 0.01])
  assert float(metrics.spectrum_error(e, e)) == 0.0
  assert float(metrics.spectrum_error(10 * e, e)) == pytest.approx(1.0)
  assert float(metrics.spectrum_error(e * [1, 1, 100, 1], e)) == (
      pytest.approx(2 / 3))
  assert np.isfinite(metrics.spectrum_error(np.zeros(4), e))
  with pytest.raises(ValueError, match="shape"):
    metrics.spectrum_error(e, e[:3])


# ----------------------------------------------------------------- physics


def test_physics_metrics_and_relative_errors():
  u = RNG.normal(size=(2, 9))
  tv = [sum(abs(u[b, (i + 1) % 9] - u[b, i]) for i in range(9))
        for b in range(2)]
  np.testing.assert_allclose(metrics.total_variation_1d(u), tv, rtol=1e-12)
  np.testing.assert_allclose(
      metrics.total_variation_error(2 * u, u), [1.0, 1.0], rtol=1e-12)
  w = RNG.normal(size=(3, 8, 8))
  z = 0.5 * np.mean(w**2, axis=(1, 2))
  np.testing.assert_allclose(metrics.enstrophy_2d(w), z, rtol=1e-12)
  np.testing.assert_allclose(metrics.dissipation_2d(w, 0.01), 0.02 * z,
                             rtol=1e-12)
  np.testing.assert_allclose(metrics.enstrophy_error(1.1 * w, w), 0.21,
                             rtol=1e-12)
  from gencast_control.systems import kolmogorov
  np.testing.assert_allclose(
      metrics.dissipation_2d(w, 0.01),
      np.asarray(kolmogorov.dissipation_rate(jnp.asarray(w), 0.01)),
      rtol=1e-5)
  with pytest.raises(ValueError, match="nu"):
    metrics.dissipation_2d(w, -1.0)


# ----------------------------------------------------------------- xarray


def test_xarray_metric_uses_names_and_area_weights():
  lat, lon = np.linspace(-90, 90, 5), np.arange(0, 360, 45.0)
  ens = RNG.normal(size=(3, 2, 8, 5))  # sample, time, lon, lat (any order)
  y = RNG.normal(size=(2, 5, 8))       # time, lat, lon
  f_da = xr.DataArray(ens, dims=("sample", "time", "lon", "lat"),
                      coords={"lat": lat, "lon": lon})
  y_da = xr.DataArray(y, dims=("time", "lat", "lon"),
                      coords={"lat": lat, "lon": lon})
  got = metrics.xarray_metric(metrics.crps_fair, f_da, y_da,
                              dims=("lat", "lon"), lat_dim="lat")
  w = metrics.area_weights(lat)[None, :, None]
  want = metrics.crps_fair(np.moveaxis(ens, 3, 2), y, w, axes=(1, 2))
  assert got.dims == ("time",)
  np.testing.assert_allclose(got.values, want, rtol=1e-12)
  got_det = metrics.xarray_metric(metrics.rmse, f_da.isel(sample=0), y_da,
                                  dims=("lat", "lon"), lat_dim="lat",
                                  time_dim="time")
  assert got_det.dims == () and float(got_det) == pytest.approx(
      float(metrics.rmse(np.moveaxis(ens[0], 2, 1), y, w, axes=(1, 2),
                         time_axis=0)))
  with pytest.raises(ValueError, match="not in truth"):
    metrics.xarray_metric(metrics.rmse, y_da, y_da, dims=("level",))


def test_engine_scores_rmse_a_and_spread_a_as_dapper_defines_them():
  """rmse.a and spread.a (DAPPER): per trajectory and analysis time the
  root over space, then the time mean after the burn-in; brute force."""
  from gencast_control.evaluation import engine
  rng = np.random.default_rng(0)
  ensembles = rng.normal(size=(2, 4, 6, 5, 3, 2))  # [K, M, T+1, x, y, C]
  truth = rng.normal(size=(2, 6, 5, 3, 2))
  scores = engine.score(ensembles, truth, burn_in=2)
  rmse, spread = [], []
  for k in range(2):
    for t in range(3, 6):
      mean = ensembles[k, :, t].mean(0)
      rmse.append(np.sqrt(np.mean((mean - truth[k, t])**2)))
      spread.append(np.sqrt(np.mean(ensembles[k, :, t].var(0, ddof=1))))
  assert scores["rmse_a"] == pytest.approx(np.mean(rmse), rel=1e-12)
  assert scores["spread_a"] == pytest.approx(np.mean(spread), rel=1e-12)
