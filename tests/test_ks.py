"""KS solver: reference agreement, 4th-order convergence, stability, data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gencast_control.data import trajectories
from gencast_control.systems.ks import (KSConfig, generate_ks_dataset,
                                        generate_ks_splits, ks_model_step,
                                        ks_random_initial_condition, ks_rollout,
                                        ks_solver_step, ks_total_variation,
                                        make_solver_step)

# Kassam & Trefethen 2005, section 6 (their kursiv.m).
KT = KSConfig(num_points=128, domain_length=32 * math.pi, solver_dt=0.25,
              model_dt=1.0)
TINY = KSConfig(num_points=32, domain_length=22.0)


def _kassam_trefethen_u0(config):
  x = config.grid
  return np.cos(x / 16) * (1 + np.sin(x / 16))


def _solve(config, dt, t_end):
  """ETDRK4 in float64 with step dt up to t_end."""
  num = int(round(t_end / dt))
  assert abs(num * dt - t_end) < 1e-12
  with jax.enable_x64(True):
    step = make_solver_step(config, dt)
    run = jax.jit(lambda u: jax.lax.fori_loop(0, num, lambda _, v: step(v), u))
    return np.asarray(run(jnp.asarray(_kassam_trefethen_u0(config))))


def _scipy_reference(config, t_end):
  """Independent method of lines in Fourier space, v' = c(k) v + N(v), Radau."""
  n, length = config.num_points, config.domain_length
  k = 2 * np.pi / length * np.fft.rfftfreq(n, 1.0 / n)
  lin = k**2 - k**4
  m = len(k)

  def rhs(_, y):
    v = y[:m] + 1j * y[m:]
    u = np.fft.irfft(v, n)
    dv = lin * v - 0.5j * k * np.fft.rfft(u * u)
    return np.concatenate([dv.real, dv.imag])

  v0 = np.fft.rfft(_kassam_trefethen_u0(config))
  sol = solve_ivp(rhs, (0, t_end), np.concatenate([v0.real, v0.imag]),
                  method="Radau", rtol=1e-11, atol=1e-12)
  assert sol.success
  return np.fft.irfft(sol.y[:m, -1] + 1j * sol.y[m:, -1], n)


def test_agrees_with_scipy_reference():
  t_end = 5.0
  ours = _solve(KT, 0.05, t_end)
  ref = _scipy_reference(KT, t_end)
  error = np.abs(ours - ref).max()
  assert np.abs(ref).max() > 0.5  # not a trivial state
  assert error < 1e-7, error
  # The default step h = 1/4 is already accurate to ~1e-5 at t = 5.
  assert np.abs(_solve(KT, 0.25, t_end) - ref).max() < 1e-4


def test_etdrk4_is_fourth_order():
  # Before the solution steepens (t ~ 10) the error is in its asymptotic
  # regime already at h = 1/2; later it is pre-asymptotic for h >= 1/32.
  t_end = 2.0
  ref = _solve(KT, 1 / 64, t_end)
  errors = [np.abs(_solve(KT, dt, t_end) - ref).max()
            for dt in (0.5, 0.25, 0.125)]
  ratios = [errors[0] / errors[1], errors[1] / errors[2]]
  # Halving h divides the error by 2^4 = 16 (measured: 16.0 and 16.0).
  assert all(14 < r < 18 for r in ratios), (errors, ratios)


def test_long_run_is_stable_and_conserves_mean():
  u0 = jnp.asarray(_kassam_trefethen_u0(KT), jnp.float32)
  states = np.asarray(jax.jit(lambda u: ks_rollout(u, 2000, KT))(u0))
  assert states.shape == (2001, 128)
  assert np.isfinite(states).all()
  assert np.abs(states).max() < 5.0
  mean0 = states[0].mean()
  assert np.abs(states.mean(axis=1) - mean0).max() < 1e-4
  assert states[-200:].std() > 0.5  # chaotic, not decayed


def test_model_step_is_substeps_of_solver_step_and_rollout_vmaps():
  cfg = KSConfig(num_points=32, domain_length=22.0, solver_dt=0.25,
                 model_dt=0.75)
  u0 = jnp.stack([ks_random_initial_condition(jax.random.PRNGKey(i), cfg)
                  for i in range(3)])
  manual = u0[1]
  for _ in range(3):
    manual = ks_solver_step(manual, cfg)
  np.testing.assert_allclose(ks_model_step(u0[1], cfg), manual, atol=1e-6)
  batched = jax.vmap(lambda u: ks_rollout(u, 4, cfg))(u0)
  assert batched.shape == (3, 5, 32)
  single = ks_rollout(u0[1], 4, cfg)
  np.testing.assert_allclose(batched[1], single, atol=1e-5)
  np.testing.assert_array_equal(single[0], u0[1])
  np.testing.assert_allclose(single[1], manual, atol=1e-6)
  np.testing.assert_allclose(
      jax.jit(ks_solver_step, static_argnums=1)(u0[0], cfg),
      ks_solver_step(u0[0], cfg), atol=1e-6)


def test_dealiasing_changes_only_aliased_modes():
  u0 = jnp.asarray(_kassam_trefethen_u0(KT), jnp.float32)
  dealiased = KSConfig(**{**KT.__dict__, "dealias": True})
  plain = ks_rollout(u0, 4, KT)[-1]
  clean = ks_rollout(u0, 4, dealiased)[-1]
  # While the spectrum is resolved (early times) the 2/3 rule changes u only
  # by round-off; later, chaos amplifies the small aliasing differences.
  np.testing.assert_allclose(clean, plain, atol=1e-5)
  # Products of modes below N/3 never reach the modes >= N/3 in a dealiased
  # step (the linear part keeps them at zero); without dealiasing they do.
  with jax.enable_x64(True):
    x = 2 * np.pi * KT.grid / KT.domain_length
    u = jnp.asarray(np.cos(10 * x) + 0.5 * np.sin(30 * x))
    clean = np.abs(np.fft.rfft(np.asarray(ks_solver_step(u, dealiased))))
    plain = np.abs(np.fft.rfft(np.asarray(ks_solver_step(u, KT))))
    high = np.arange(len(clean)) >= 128 / 3
    assert clean[high].max() < 1e-12
    assert plain[high].max() > 1e-5
    np.testing.assert_allclose(clean[:21], plain[:21], rtol=1e-3, atol=1e-4)


def test_total_variation_matches_loop():
  u = np.random.default_rng(0).normal(size=(3, 17))
  brute = [sum(abs(row[(i + 1) % 17] - row[i]) for i in range(17))
           for row in u]
  np.testing.assert_allclose(ks_total_variation(u), brute, rtol=1e-6)
  assert float(ks_total_variation(np.ones(9))) == 0.0
  np.testing.assert_allclose(ks_total_variation(np.array([0., 1., 0., 1.])),
                             4.0)


def test_random_initial_condition_is_smooth_zero_mean():
  u0 = np.asarray(ks_random_initial_condition(jax.random.PRNGKey(3), KT))
  spectrum = np.abs(np.fft.rfft(u0))
  assert abs(u0.mean()) < 1e-5
  assert spectrum[1:9].max() > 1.0 and spectrum[9:].max() < 1e-3
  other = ks_random_initial_condition(jax.random.PRNGKey(4), KT)
  assert np.abs(u0 - np.asarray(other)).max() > 0.1


def test_dataset_layout_and_determinism():
  ds = generate_ks_dataset(jax.random.PRNGKey(0), 3, 5, TINY, burn_in_steps=10)
  assert ds["u"].dims == ("trajectory", "time", "x")
  assert ds["u"].shape == (3, 6, 32) and ds["u"].dtype == np.float32
  np.testing.assert_allclose(ds.time.values, np.arange(6) * TINY.model_dt)
  np.testing.assert_allclose(ds.x.values, np.arange(32) * 22.0 / 32)
  assert ds.attrs == {"system": "kuramoto_sivashinsky", "model_dt": 1.0,
                      "solver_dt": 0.25, "domain_length": 22.0,
                      "num_points": 32, "dealias": 0, "burn_in_steps": 10}
  assert trajectories.validate_trajectories(ds, ["u"], ["x"]) == ("x",)
  again = generate_ks_dataset(jax.random.PRNGKey(0), 3, 5, TINY,
                              burn_in_steps=10)
  np.testing.assert_array_equal(ds["u"].values, again["u"].values)
  other = generate_ks_dataset(jax.random.PRNGKey(1), 3, 5, TINY,
                              burn_in_steps=10)
  assert np.abs(other["u"].values - ds["u"].values).max() > 0.1
  # The stored trajectory continues the solver: state n+1 = model step of n.
  u = ds["u"].values[1]
  np.testing.assert_allclose(ks_model_step(jnp.asarray(u[2]), TINY), u[3],
                             atol=1e-5)


def test_burn_in_reaches_the_attractor():
  ds = generate_ks_dataset(jax.random.PRNGKey(0), 2, 1, KT, burn_in_steps=300)
  u = ds["u"].values
  # Chaotic KS at L = 32 pi: |u| of order 2-3, energy in modes ~ L / (2 pi
  # sqrt 2) = 11 wavelengths, far from the 8-mode initial field.
  assert 1.0 < np.abs(u).max() < 5.0
  spectrum = np.abs(np.fft.rfft(u[:, 0], axis=-1)).mean(axis=0)
  assert spectrum[9:20].sum() > spectrum[1:9].sum()


def test_generate_splits_writes_three_files(tmp_path):
  paths = generate_ks_splits(tmp_path, 7, counts=(2, 1, 1), num_steps=3,
                             config=TINY, burn_in_steps=5)
  assert sorted(p.name for p in paths.values()) == ["test.nc", "train.nc",
                                                    "validation.nc"]
  train = trajectories.open_trajectories(paths["train"])
  assert train["u"].shape == (2, 4, 32)
  expected = generate_ks_dataset(jax.random.fold_in(jax.random.PRNGKey(7), 0),
                                 2, 3, TINY, burn_in_steps=5)
  np.testing.assert_array_equal(train["u"].values, expected["u"].values)
  test = trajectories.open_trajectories(paths["test"])
  assert np.abs(test["u"].values[0] - train["u"].values[0]).max() > 0.1


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_points=7), "even integer"),
    (dict(num_points=4), ">= 8"),
    (dict(model_dt=0.3), "integer multiple"),
    (dict(solver_dt=0.5, model_dt=0.25), "integer multiple"),
    (dict(solver_dt=-1.0), "solver_dt must be finite and > 0"),
    (dict(domain_length=0.0), "domain_length"),
    (dict(model_dt=float("nan")), "model_dt"),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    KSConfig(**kwargs)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match=r"shape \[\.\.\., 32\]"):
    ks_solver_step(jnp.zeros(30), TINY)
  with pytest.raises(ValueError, match=r"shape \[\.\.\., 32\]"):
    ks_rollout(jnp.zeros((32, 1)), 2, TINY)
  with pytest.raises(ValueError, match="num_steps"):
    ks_rollout(jnp.zeros(32), -1, TINY)
  with pytest.raises(ValueError, match="num_trajectories"):
    generate_ks_dataset(jax.random.PRNGKey(0), 0, 3, TINY)
  with pytest.raises(ValueError, match="counts"):
    generate_ks_splits("unused", 0, counts=(1, 1), config=TINY)
