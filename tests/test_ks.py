"""KS solver: reference agreement, 4th-order convergence, stability, data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gencast_control.pdes.ks import (KSConfig, generate_ks_dataset,
                                     ks_rollout, make_solver_step)

KT = KSConfig(num_points=128, domain_length=32 * math.pi, solver_dt=0.25,
              model_dt=1.0)


def enable_x64():
  if hasattr(jax, "enable_x64"):  # jax >= 0.8
    return jax.enable_x64(True)
  from jax.experimental import enable_x64 as legacy
  return legacy()


def _kassam_trefethen_u0(config):
  x = config.grid
  return np.cos(x / 16) * (1 + np.sin(x / 16))


def _solve(config, dt, t_end):
  with enable_x64():
    step = jax.jit(make_solver_step(config, dt))
    u = jnp.asarray(_kassam_trefethen_u0(config), jnp.float64)
    for _ in range(int(round(t_end / dt))):
      u = step(u)
    return np.asarray(u)


def _scipy_reference(config, t_end):
  """Method of lines in Fourier space, v' = c(k) v + N(v), by scipy's Radau."""
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
                  method="Radau", rtol=1e-10, atol=1e-12)
  assert sol.success
  return np.fft.irfft(sol.y[:m, -1] + 1j * sol.y[m:, -1], n)


def test_agrees_with_scipy_reference():
  t_end = 5.0
  ours = _solve(KT, 0.05, t_end)
  ref = _scipy_reference(KT, t_end)
  assert np.abs(ours - ref).max() < 1e-6 * np.abs(ref).max() + 1e-7


def test_etdrk4_is_fourth_order():
  t_end = 10.0
  ref = _solve(KT, 0.0625, t_end)
  errors = [np.abs(_solve(KT, dt, t_end) - ref).max() for dt in (1.0, 0.5)]
  order = math.log2(errors[0] / errors[1])
  assert 3.5 < order < 4.6, (errors, order)


def test_long_run_is_stable_and_conserves_mean():
  u0 = jnp.asarray(_kassam_trefethen_u0(KT), jnp.float32)
  states = np.asarray(jax.jit(lambda u: ks_rollout(u, 2000, KT))(u0))
  assert np.isfinite(states).all()
  assert np.abs(states).max() < 5.0
  assert np.abs(states.mean(axis=1)).max() < 1e-4
  assert states[-200:].std() > 0.5  # chaotic, not decayed


def test_dataset_layout_and_determinism():
  cfg = KSConfig(num_points=32, domain_length=22.0)
  ds = generate_ks_dataset(jax.random.PRNGKey(0), 3, 5, cfg, burn_in_steps=10)
  assert ds["u"].dims == ("trajectory", "time", "x")
  assert ds["u"].shape == (3, 6, 32)
  np.testing.assert_allclose(ds.time.values, np.arange(6) * cfg.model_dt)
  assert ds.attrs["system"] == "kuramoto_sivashinsky"
  again = generate_ks_dataset(jax.random.PRNGKey(0), 3, 5, cfg,
                              burn_in_steps=10)
  np.testing.assert_array_equal(ds["u"].values, again["u"].values)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_points=7), "even"),
    (dict(model_dt=0.3), "integer multiple"),
    (dict(solver_dt=-1.0), "> 0"),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    KSConfig(**kwargs)
