"""The classical filters with the true solver: LETKF and the fixed-lag LETKS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.baselines import letkf
from gencast_control.baselines.filters import assimilate_filter
from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.core.observations import Observations
from gencast_control.core.regimes import ObservationRegime, sample_observations
from tests.conftest import TINY_KS

KEY = jax.random.PRNGKey(5)
REGIME = ObservationRegime("r", fraction=0.25, noise_std=0.3)
STEPS = 20


@pytest.fixture(scope="module")
def problem(tiny_ks_data):
  truth = tiny_ks_data[2, :STEPS + 1]
  obs = sample_observations(REGIME, jax.random.PRNGKey(4), jnp.asarray(truth))
  return truth, obs


def run(method, truth, obs, **options):
  options = {"pde_config": TINY_KS, "initial_std": 0.5,
             "localization_radius": 4.0, "inflation": 1.1, **options}
  return np.asarray(assimilate_filter(method, truth[:1], obs, STEPS, KEY, 8,
                                      **options))


def rmse_per_time(ensemble, truth):
  return np.sqrt(np.mean((ensemble.mean(0) - truth)**2, axis=(1, 2)))


def test_letkf_weights_give_the_kalman_update_for_one_column():
  # One column, no localisation, linear H: the LETKF's mean and covariance
  # are the Kalman filter's with the inflated ensemble covariance.
  rng = np.random.default_rng(0)
  m, n, inflation = 6, 4, 1.2
  x = rng.normal(size=(m, 1, n))
  observed = np.array([0, 2])
  noise = np.array([0.5, 0.8])
  y = rng.normal(size=2)
  weights = letkf.letkf_weights(jnp.asarray(x[:, 0, observed]),
                                jnp.asarray(y), jnp.asarray(noise),
                                jnp.ones((1, 2)), inflation)
  analysed = np.asarray(letkf.apply_weights(jnp.asarray(x), weights))[:, 0]
  anomalies = x[:, 0] - x[:, 0].mean(0)
  prior = inflation * anomalies.T @ anomalies / (m - 1)
  h = np.eye(n)[observed]
  gain = prior @ h.T @ np.linalg.inv(h @ prior @ h.T + np.diag(noise**2))
  mean = x[:, 0].mean(0) + gain @ (y - h @ x[:, 0].mean(0))
  np.testing.assert_allclose(analysed.mean(0), mean, atol=1e-4)
  np.testing.assert_allclose(np.cov(analysed.T), (np.eye(n) - gain @ h)
                             @ prior, atol=1e-4)


def test_letkf_tracks_the_truth_and_beats_the_free_run(problem):
  truth, obs = problem
  free = run("letkf", truth, Observations.from_arrays(
      truth, np.zeros_like(truth), 0.3))
  filtered = run("letkf", truth, obs)
  assert filtered.shape == (8, STEPS + 1, 32, 1)
  late = slice(-5, None)
  assert (rmse_per_time(filtered, truth)[late].mean()
          < 0.5 * rmse_per_time(free, truth)[late].mean())
  assert np.abs(filtered[:, 0] - truth[0]).max() > 0.1  # perturbed start


def test_letks_is_the_letkf_smoothed_over_its_lag(problem):
  truth, obs = problem
  filtered = run("letkf", truth, obs)
  smoothed = run("letks", truth, obs, lag=3)
  # The filter's forecasts start from its analyses, so the smoother's newest
  # row is the filter's; earlier rows have also seen L later observations.
  np.testing.assert_allclose(smoothed[:, -1], filtered[:, -1], atol=1e-4)
  assert np.abs(smoothed[:, -4] - filtered[:, -4]).max() > 1e-3
  np.testing.assert_allclose(run("letkf", truth, obs, lag=3), smoothed,
                             atol=1e-5)
  interior = slice(2, STEPS - 3)
  assert (rmse_per_time(smoothed, truth)[interior].mean()
          < rmse_per_time(filtered, truth)[interior].mean())


def test_the_smoother_does_not_inflate_earlier_states_again(problem):
  # One observed point, a short localisation radius: far from it the
  # analysis only inflates the forecast (by sqrt(lambda)), which the
  # smoother's earlier rows must not get a second time.
  truth, _ = problem
  mask = np.zeros_like(truth)
  mask[:, 0] = 1.0
  one_point = Observations.from_arrays(truth, mask, 0.3)
  options = dict(localization_radius=1.0, inflation=1.2)
  filtered = run("letkf", truth, one_point, **options)
  smoothed = run("letks", truth, one_point, lag=2, **options)
  far = slice(4, 28)
  np.testing.assert_allclose(smoothed[:, :, far], filtered[:, :, far],
                             atol=1e-3)  # float noise, grown by the chaos
  assert np.abs(smoothed[:, :-1, 0] - filtered[:, :-1, 0]).max() > 1e-3


def test_without_observations_members_run_the_true_model(problem):
  truth, _ = problem
  nothing = Observations.from_arrays(truth, np.zeros_like(truth), 0.3)
  exact = run("letks", truth, nothing, initial_std=0.0)
  np.testing.assert_allclose(exact[0], truth, atol=1e-3 * np.abs(truth).max())


def test_clear_errors(problem):
  truth, obs = problem
  with pytest.raises(ValueError, match="unknown filter 'kalman'"):
    assimilate_filter("kalman", truth[:1], obs, STEPS, KEY, 4)
  with pytest.raises(ValueError, match="letks needs lag >= 1"):
    run("letks", truth, obs, lag=0)
  with pytest.raises(ValueError, match="inflation must be >= 1"):
    run("letkf", truth, obs, inflation=0.9)
  with pytest.raises(ValueError, match="LETKFOptions needs the true solver"):
    assimilate_filter("letkf", truth[:1], obs, STEPS, KEY, 4)
  with pytest.raises(ValueError, match="letkf needs ensemble_size >= 2"):
    assimilate_filter("letkf", truth[:1], obs, STEPS, KEY, 1,
                      pde_config=TINY_KS)
  with pytest.raises(ValueError, match="obs_capacity=1 is below"):
    run("letkf", truth, obs, obs_capacity=1)


# ------------------------------------------- the same filters on the ARDM


def run_ardm(method, ardm, truth, obs, **options):
  options = {"model": ardm, "initial_std": 0.0, "localization_radius": 4.0,
             "inflation": 1.1, **options}
  return np.asarray(assimilate_filter(method, truth[:1], obs, STEPS, KEY, 8,
                                      **options))


def test_without_observations_the_ardm_filters_are_the_unguided_ensemble(
    problem, tiny_ardm):
  truth, _ = problem
  nothing = Observations.from_arrays(truth, np.zeros_like(truth), 0.3)
  unguided = np.asarray(ensemble_rollout(tiny_ardm, truth[:1], STEPS, KEY,
                                         ensemble_size=8))
  for method in ("letkf_ardm", "letks_ardm"):
    np.testing.assert_allclose(run_ardm(method, tiny_ardm, truth, nothing),
                               unguided, atol=1e-5)


def test_the_ardm_letkf_beats_the_unguided_ensemble(problem, tiny_ardm):
  truth, obs = problem
  unguided = np.asarray(ensemble_rollout(tiny_ardm, truth[:1], STEPS, KEY,
                                         ensemble_size=8))
  filtered = run_ardm("letkf_ardm", tiny_ardm, truth, obs, inflation=1.5)
  smoothed = run_ardm("letks_ardm", tiny_ardm, truth, obs, inflation=1.5,
                      lag=3)
  assert filtered.shape == unguided.shape == (8, STEPS + 1, 32, 1)
  np.testing.assert_allclose(smoothed[:, -1], filtered[:, -1], atol=1e-4)
  late = slice(-10, None)
  free = rmse_per_time(unguided, truth)[late].mean()
  assert rmse_per_time(filtered, truth)[late].mean() < 0.5 * free
  assert (rmse_per_time(smoothed, truth)[2:STEPS - 3].mean()
          < rmse_per_time(filtered, truth)[2:STEPS - 3].mean())


def test_ardm_filter_errors(problem, tiny_ardm):
  truth, obs = problem
  with pytest.raises(ValueError, match="letkf_ardm needs model=<the frozen"):
    assimilate_filter("letkf_ardm", truth[:1], obs, STEPS, KEY, 4,
                      pde_config=TINY_KS)
  with pytest.raises(ValueError, match="letks_ardm needs lag >= 1"):
    run_ardm("letks_ardm", tiny_ardm, truth, obs, lag=0)
  with pytest.raises(ValueError, match=r"needs a history of shape \(1, 32, 1"):
    run_ardm("letkf_ardm", tiny_ardm, truth[:, :16], obs)
  with pytest.raises(ValueError, match="letkf_ardm needs ensemble_size >= 2"):
    assimilate_filter("letkf_ardm", truth[:1], obs, STEPS, KEY, 1,
                      model=tiny_ardm)
