"""Diffusion DA baselines and the EnKF on the tiny KS model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.baselines import enkf
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.baselines.filters import assimilate_filter
from gencast_control.baselines.guidance import assimilate_baseline
from gencast_control.core.observations import Observations
from gencast_control.systems.ks import ks_rollout
from gencast_control.core.regimes import ObservationRegime, sample_observations
from tests.conftest import TINY_KS

REGIME = ObservationRegime("r", fraction=0.5, noise_std=0.1)
STEPS = 6
KEY = jax.random.PRNGKey(3)


@pytest.fixture(scope="module")
def problem(tiny_ks_data):
  truth = tiny_ks_data[1, :STEPS + 1]
  obs = sample_observations(REGIME, jax.random.PRNGKey(1), jnp.asarray(truth))
  return truth, obs


def _misfit(ensemble, obs):
  ens = np.asarray(ensemble)
  return float(np.mean([obs.misfit(jnp.asarray(m[1:]), slice(1, None))
                        for m in ens]))


@pytest.fixture(scope="module")
def unguided(tiny_ardm, problem):
  truth, obs = problem
  return np.asarray(assimilate_baseline("unguided", tiny_ardm, truth[:1], obs,
                                        STEPS, KEY, 3))


def test_unguided_is_the_plain_ensemble_rollout(tiny_ardm, problem, unguided):
  truth, _ = problem
  plain = ensemble_rollout(tiny_ardm, truth[:1], STEPS, KEY, 3)
  np.testing.assert_array_equal(unguided, np.asarray(plain))


def test_dps_with_zero_step_is_unguided(tiny_ardm, problem, unguided):
  # u = -0 * grad is exactly 0, but XLA compiles the program with the
  # denoiser's VJP differently (fusion), so results agree to float rounding
  # (measured: <= 2.4e-7), not bit for bit.
  truth, obs = problem
  out = assimilate_baseline("dps", tiny_ardm, truth[:1], obs, STEPS, KEY, 3,
                            zeta=0.0)
  np.testing.assert_allclose(np.asarray(out), unguided, rtol=0, atol=1e-5)
  guided = assimilate_baseline("dps", tiny_ardm, truth[:1], obs, STEPS, KEY,
                               3, zeta=1e-3)
  assert np.abs(np.asarray(guided) - unguided).max() > 1e-3


class Wrapped(FrozenARDM):
  """A FrozenARDM that only forwards the protocol to a grid ARDM: guidance
  rules must run through `step(..., guidance=)`, not grid internals."""

  def __init__(self, inner):
    self.inner = inner

  state_shape = property(lambda self: self.inner.state_shape)
  history_length = property(lambda self: self.inner.history_length)
  periodic = property(lambda self: self.inner.periodic)
  fingerprint = property(lambda self: "wrapped-" + self.inner.fingerprint)

  def step(self, history, key, preview=None, controller=None, remat=False,
           context=None, guidance=None):
    return self.inner.step(history, key, preview, controller, remat, context,
                           guidance)


@pytest.mark.parametrize("method", ["dps", "repaint"])  # sda: dps's path
def test_guidance_rules_run_on_any_frozen_ardm(tiny_ardm, problem, method):
  truth, obs = problem
  direct = assimilate_baseline(method, tiny_ardm, truth[:1], obs, 3, KEY, 2)
  wrapped = assimilate_baseline(method, Wrapped(tiny_ardm), truth[:1], obs, 3,
                                KEY, 2)
  np.testing.assert_array_equal(np.asarray(wrapped), np.asarray(direct))
  with pytest.raises(ValueError, match="needs a FrozenARDM"):
    assimilate_baseline(method, object(), truth[:1], obs, 3, KEY, 2)


def test_a_step_takes_a_controller_or_a_rule_not_both(tiny_ardm, problem):
  truth, obs = problem
  rule = lambda g: jnp.zeros_like(g.state)
  with pytest.raises(ValueError, match="not both"):
    tiny_ardm.step(jnp.asarray(truth[:1]), KEY, obs.preview(0, 1),
                   controller=lambda inputs: inputs.state, guidance=rule)
  # a zero rule is the pretrained sampler
  x, _ = tiny_ardm.step(jnp.asarray(truth[:1]), KEY, guidance=rule)
  np.testing.assert_allclose(np.asarray(x), np.asarray(
      tiny_ardm.step(jnp.asarray(truth[:1]), KEY)[0]), atol=1e-6)


@pytest.mark.parametrize("method", ["dps", "sda", "repaint"])
def test_guidance_reduces_observation_misfit(tiny_ardm, problem, unguided,
                                             method):
  truth, obs = problem
  out = assimilate_baseline(method, tiny_ardm, truth[:1], obs, STEPS, KEY, 3)
  assert out.shape == unguided.shape
  assert np.isfinite(np.asarray(out)).all()
  base, guided = _misfit(unguided, obs), _misfit(out, obs)
  assert guided < 0.5 * base, (method, guided, base)


def test_repaint_reproduces_observed_values_at_the_last_substep(tiny_ardm,
                                                                problem):
  truth, obs = problem
  out = np.asarray(assimilate_baseline("repaint", tiny_ardm, truth[:1], obs,
                                       STEPS, KEY, 2))
  mask = np.asarray(obs.mask)[1:] > 0
  values = np.asarray(obs.values)[1:]
  for member in out:
    np.testing.assert_allclose(member[1:][mask], values[mask], atol=1e-4)
    assert np.abs(member[1:][~mask] - values[~mask]).max() > 1e-2


def test_gaspari_cohn_matches_the_formula():
  c = 2.0
  def reference(d):
    z = abs(d) / c
    if z <= 1:
      return -z**5 / 4 + z**4 / 2 + 5 * z**3 / 8 - 5 * z**2 / 3 + 1
    if z <= 2:
      return (z**5 / 12 - z**4 / 2 + 5 * z**3 / 8 + 5 * z**2 / 3 - 5 * z + 4
              - 2 / (3 * z))
    return 0.0
  distances = np.array([0.0, 0.7, 2.0, 2.9, 4.0, 5.5, -1.3])
  got = np.asarray(enkf.gaspari_cohn(distances, c))
  np.testing.assert_allclose(got, [reference(d) for d in distances],
                             atol=1e-6)
  assert got[0] == 1.0 and got[4] == pytest.approx(0.0, abs=1e-6)
  d = enkf.periodic_distance(8)
  assert d[0, 7] == 1 and d[0, 4] == 4 and d[2, 6] == 4


def test_enkf_with_perfect_full_observations_tracks_the_truth():
  u0 = jnp.sin(2 * np.pi * jnp.arange(32) / 32 * 2) * 1.5
  truth = np.asarray(ks_rollout(u0, 40, TINY_KS))[20:, :, None]  # [21, 32, 1]
  obs = Observations.from_arrays(truth, np.ones_like(truth), noise_std=1e-3)
  out = np.asarray(assimilate_filter("enkf", truth[:1], obs, 20, KEY, 6,
                                     ks_config=TINY_KS, initial_std=0.3))
  assert out.shape == (6, 21, 32, 1)
  error = np.abs(out[:, 1:] - truth[None, 1:]).max()
  assert error < 0.02, error
  assert np.abs(out[:, 0] - truth[0]).max() > 0.1  # perturbed start


def test_enkf_reduces_error_with_sparse_noisy_observations(tiny_ks_data):
  truth = tiny_ks_data[2, :21]
  obs = sample_observations(REGIME, jax.random.PRNGKey(4), jnp.asarray(truth))
  free = np.asarray(assimilate_filter(
      "enkf", truth[:1], Observations.from_arrays(
          truth, np.zeros_like(truth), 0.1), 20, KEY, 8, ks_config=TINY_KS,
      initial_std=0.5))
  filtered = np.asarray(assimilate_filter(
      "enkf", truth[:1], obs, 20, KEY, 8, ks_config=TINY_KS,
      initial_std=0.5))
  rmse = lambda e: np.sqrt(np.mean((e.mean(0)[-5:] - truth[-5:])**2))
  assert rmse(filtered) < 0.5 * rmse(free), (rmse(filtered), rmse(free))


def test_clear_errors(tiny_ardm, problem):
  truth, obs = problem
  with pytest.raises(ValueError, match="unknown baseline method 'kalman'"):
    assimilate_baseline("kalman", tiny_ardm, truth[:1], obs, STEPS, KEY, 2)
  with pytest.raises(ValueError, match="unknown options"):
    assimilate_baseline("dps", tiny_ardm, truth[:1], obs, STEPS, KEY, 2,
                        gamma=1.0)
  with pytest.raises(ValueError, match="ks_config"):
    assimilate_filter("enkf", truth[:1], obs, STEPS, KEY, 2)
  with pytest.raises(ValueError, match="observations cover"):
    assimilate_baseline("sda", tiny_ardm, truth[:1], obs, 50, KEY, 2)
  with pytest.raises(ValueError,
                     match=r"ks solver needs a history \[h, 64, 1\]"):
    from gencast_control.systems.ks import KSConfig
    assimilate_filter("enkf", truth[:1], obs, STEPS, KEY, 2,
                        ks_config=KSConfig(num_points=64))


# ------------------------------------------------- 2-D EnKF (Kolmogorov flow)

from gencast_control.systems.kolmogorov import (  # noqa: E402
    KolmogorovConfig, coarsen, generate_kolmogorov_dataset, lift)

# A smooth flow on a 16^2 grid, simulated and stored at the same resolution
# (the lift to a finer solver grid is tested separately: on grids this small
# the sub-grid modes it cannot recover carry much of the energy).
TINY_KOLMOGOROV = KolmogorovConfig(resolution=16, output_resolution=16,
                                   reynolds=100.0, forcing_wavenumber=2,
                                   solver_dt=0.0625, model_dt=0.25)


def test_lift_is_the_band_limited_inverse_of_block_averaging():
  x = np.arange(8) * 2 * np.pi / 8
  rng = np.random.default_rng(0)
  field = sum(rng.normal() * np.cos(kx * x[:, None] + ky * x[None, :]
                                    + rng.uniform(0, 6))
              for kx in range(-3, 4) for ky in range(0, 4))
  field = jnp.asarray(field, jnp.float32)
  fine = lift(field, 16)
  assert fine.shape == (16, 16)
  np.testing.assert_allclose(np.asarray(coarsen(fine, 8)), field, atol=1e-4)
  # a smooth fine field is recovered from its block means up to its
  # (tiny) content at the coarse Nyquist wavenumber
  xf = np.arange(16) * 2 * np.pi / 16
  smooth = np.sin(xf[:, None] + 0.3) * np.cos(2 * xf[None, :])
  back = lift(coarsen(jnp.asarray(smooth, jnp.float32), 8), 16)
  np.testing.assert_allclose(np.asarray(back), smooth, atol=1e-4)


def test_periodic_2d_distance_and_localisation():
  coords = enkf.grid_coordinates((8, 8), 1)
  d = np.asarray(enkf.periodic_grid_distance(coords[:, None], coords[None],
                                             (8, 8)))
  assert d.shape == (64, 64)
  assert d[0, 7] == 1 and d[0, 63] == pytest.approx(np.sqrt(2))
  assert d[0, 4 * 8 + 4] == pytest.approx(np.sqrt(32))  # farthest point
  np.testing.assert_allclose(d, d.T)


def test_enkf_on_kolmogorov_flow_assimilates_with_the_true_solver():
  ds = generate_kolmogorov_dataset(jax.random.PRNGKey(0), 1, 6,
                                   TINY_KOLMOGOROV, burn_in_steps=4)
  truth = ds["vorticity"].values[0][..., None].astype(np.float32)
  regime = ObservationRegime("k", fraction=0.5, noise_std=0.05)
  obs = sample_observations(regime, jax.random.PRNGKey(1), jnp.asarray(truth))
  no_obs = Observations.from_arrays(truth, np.zeros_like(truth), 0.05)
  # one observation-slot count for all runs: one compiled program
  options = dict(pde_config=TINY_KOLMOGOROV, initial_std=1.0,
                 localization_radius=3.0, obs_capacity=128)
  free = np.asarray(assimilate_filter("enkf", truth[:1], no_obs, 6,
                                        KEY, 6, **options))
  filtered = np.asarray(assimilate_filter("enkf", truth[:1], obs, 6,
                                            KEY, 6, **options))
  assert filtered.shape == (6, 7, 16, 16, 1)
  rmse = lambda e: np.sqrt(np.mean((e.mean(0)[-3:] - truth[-3:])**2))
  assert rmse(filtered) < 0.5 * rmse(free), (rmse(filtered), rmse(free))
  # without perturbations every member is the true model run
  exact = np.asarray(assimilate_filter(
      "enkf", truth[:1], no_obs, 6, KEY, 6, **dict(options, initial_std=0.0)))
  np.testing.assert_allclose(exact[0], truth, atol=1e-3 * np.abs(truth).max())
  with pytest.raises(ValueError, match="obs_capacity=8 is below the 128"):
    assimilate_filter("enkf", truth[:1], obs, 6, KEY, 2,
                        **dict(options, obs_capacity=8))
  with pytest.raises(ValueError, match=r"kolmogorov solver needs a history"
                     r" \[h, 16, 16, 1\]"):
    assimilate_filter("enkf", truth[:1, :4, :4], no_obs, 6, KEY, 2,
                        pde_config=TINY_KOLMOGOROV)
