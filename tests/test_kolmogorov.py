"""Kolmogorov-flow solver: budgets, invariants, exact solutions, data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.systems.kolmogorov import (
    KolmogorovConfig, cfl_time_step, coarse_grid_points, coarsen,
    dissipation_rate, energy, energy_input, energy_spectrum, enstrophy,
    enstrophy_input, generate_kolmogorov_dataset, grid_points,
    kolmogorov_model_step, kolmogorov_random_initial_condition,
    kolmogorov_rollout, kolmogorov_solver_step, palinstrophy,
    velocity_from_vorticity)

# 32^2 keeps k_f = 4 inside the 2/3 rule (k < 10.7); h k_max max(|u|+|v|) ~ 1.
SMALL = KolmogorovConfig(resolution=32, output_resolution=16,
                         solver_dt=1 / 64, model_dt=0.25)


def _random_state(config, seed=0, spin_up_steps=4):
  """A turbulent-ish float64 state: random field advanced a few model steps."""
  w = kolmogorov_random_initial_condition(jax.random.PRNGKey(seed), config)
  if spin_up_steps:
    w = kolmogorov_rollout(w, spin_up_steps, config)[-1]
  return w


def _laminar(config):
  """omega* = f / (nu k_f^2 + alpha), the steady shear flow u* = F / (...)."""
  kf = config.forcing_wavenumber
  rate = config.viscosity * kf**2 + config.drag
  y = grid_points(config.resolution)[None, :]
  omega = np.broadcast_to(-kf * np.cos(kf * y) / rate,
                          (config.resolution,) * 2)
  u = np.broadcast_to(np.sin(kf * y) / rate, (config.resolution,) * 2)
  return omega, u, rate


# ------------------------------------------------------------- budgets


def test_energy_and_enstrophy_budgets_match_finite_differences():
  """dE/dt = <u.F> - 2 nu Z - 2 alpha E; dZ/dt = <w f> - 2 nu P - 2 alpha Z."""
  with jax.enable_x64(True):
    cfg = SMALL
    w0 = _random_state(cfg)
    h = 1e-3
    w1 = kolmogorov_solver_step(w0, cfg, dt=h)
    w2 = kolmogorov_solver_step(w1, cfg, dt=h)
    nu, alpha = cfg.viscosity, cfg.drag

    de_dt = float(energy(w2) - energy(w0)) / (2 * h)
    e_terms = [float(energy_input(w1, cfg)), -float(dissipation_rate(w1, nu)),
               -2 * alpha * float(energy(w1))]
    dz_dt = float(enstrophy(w2) - enstrophy(w0)) / (2 * h)
    z_terms = [float(enstrophy_input(w1, cfg)),
               -2 * nu * float(palinstrophy(w1)),
               -2 * alpha * float(enstrophy(w1))]
  # Each term is far from negligible, so a wrong sign or factor shows up.
  for terms in (e_terms, z_terms):
    assert min(abs(t) for t in terms) > 1e-3 * sum(abs(t) for t in terms)
  assert abs(de_dt - sum(e_terms)) < 1e-4 * sum(abs(t) for t in e_terms)
  assert abs(dz_dt - sum(z_terms)) < 1e-4 * sum(abs(t) for t in z_terms)


def test_inviscid_unforced_flow_conserves_energy_and_enstrophy():
  cfg = KolmogorovConfig(resolution=32, output_resolution=32,
                         reynolds=math.inf, forcing_wavenumber=0, drag=0.0,
                         solver_dt=1 / 256, model_dt=0.5)
  with jax.enable_x64(True):
    w0 = _random_state(cfg, seed=3, spin_up_steps=0)
    traj = np.asarray(kolmogorov_rollout(w0, 4, cfg))
    e, z = np.asarray(energy(traj)), np.asarray(enstrophy(traj))
  change = np.linalg.norm(traj[-1] - traj[0]) / np.linalg.norm(traj[0])
  assert change > 0.3  # the flow really evolves
  np.testing.assert_allclose(e, e[0], rtol=1e-7)
  np.testing.assert_allclose(z, z[0], rtol=1e-7)


def test_etdrk4_is_fourth_order_in_time():
  with jax.enable_x64(True):
    cfg = SMALL
    w0 = _random_state(cfg, spin_up_steps=0)

    def solve(h, t_end=0.25):
      step = jax.jit(lambda w: kolmogorov_solver_step(w, cfg, dt=h))
      w = w0
      for _ in range(int(round(t_end / h))):
        w = step(w)
      return np.asarray(w)

    ref = solve(1 / 256)
    err = [np.abs(solve(h) - ref).max() for h in (1 / 16, 1 / 32)]
  assert 12 < err[0] / err[1] < 20  # 2^4 = 16


# ------------------------------------------------- exact laminar solutions


def test_laminar_kolmogorov_flow_is_a_steady_state():
  cfg = SMALL
  omega, u, _ = _laminar(cfg)
  np.testing.assert_allclose(velocity_from_vorticity(omega)[..., 0], u,
                             atol=1e-5 * np.abs(u).max())
  with jax.enable_x64(True):
    traj = np.asarray(kolmogorov_rollout(omega, 8, cfg))
  np.testing.assert_allclose(traj, np.broadcast_to(omega, traj.shape),
                             atol=1e-10 * np.abs(omega).max())
  # float32: the rounding of the ETDRK4 weights shifts the fixed point by
  # ~eps / (h (nu k_f^2 + alpha)) ~ 1e-7 * 550, relative.
  traj = np.asarray(kolmogorov_rollout(omega.astype(np.float32), 8, cfg))
  np.testing.assert_allclose(traj, np.broadcast_to(omega, traj.shape),
                             atol=1e-4 * np.abs(omega).max())
  # The budget closes on it: <u.F> = 2 nu Z + 2 alpha E.
  with jax.enable_x64(True):
    power = float(energy_input(omega, cfg))
    loss = float(dissipation_rate(omega, cfg.viscosity)
                 + 2 * cfg.drag * energy(omega))
  assert power > 0
  np.testing.assert_allclose(power, loss, rtol=1e-10)


def test_shear_flow_spins_up_exactly_from_rest():
  """From omega = 0: omega(t) = omega* (1 - exp(-(nu k_f^2 + alpha) t))."""
  cfg = SMALL
  omega, _, rate = _laminar(cfg)
  with jax.enable_x64(True):
    traj = np.asarray(kolmogorov_rollout(np.zeros_like(omega), 6, cfg))
  t = np.arange(7) * cfg.model_dt
  expected = omega[None] * (1 - np.exp(-rate * t))[:, None, None]
  np.testing.assert_allclose(traj, expected, atol=1e-10)


# ---------------------------------------------------------------- stability


def test_default_reynolds_run_stays_finite_and_bounded():
  """20 time units at Re = 1000 on 64^2 (under-resolved on purpose).

  A priori bound: dE/dt <= <u.F> - 2 alpha E <= sqrt(E) - 2 alpha E, since
  <u.F> <= sqrt(<u^2>) sqrt(<F^2>) = sqrt(2E) / sqrt(2); so
  E(t) <= max(E(0), 1 / (4 alpha^2)).
  """
  cfg = KolmogorovConfig(resolution=64, output_resolution=32,
                         solver_dt=1 / 128, model_dt=0.5)
  w0 = kolmogorov_random_initial_condition(jax.random.PRNGKey(7), cfg)
  traj = np.asarray(jax.jit(lambda w: kolmogorov_rollout(w, 40, cfg))(w0))
  assert np.isfinite(traj).all()
  e = np.asarray(energy(traj))
  assert e.max() <= max(e[0], 1 / (4 * cfg.drag**2)) * 1.001
  # It stays turbulent, far from the laminar state (E* = 1 / (4 rate^2) ~ 19).
  laminar, _, _ = _laminar(cfg)
  assert 0.2 < e[-10:].mean() < 5
  assert np.linalg.norm(traj[-1] - laminar) > 0.5 * np.linalg.norm(laminar)


def test_cfl_time_step_formula():
  h = cfl_time_step(128, 5.0, safety=1.0)
  assert math.isclose(h * (128 / 3) * 2 * 5.0, 2 * math.sqrt(2))
  with pytest.raises(ValueError, match="max_velocity"):
    cfl_time_step(64, 0.0)


# ----------------------------------------------------------- diagnostics


def _band_limited_field(n, seed=0):
  rng = np.random.default_rng(seed)
  w_hat = np.fft.fft2(rng.normal(size=(n, n)))
  k = np.fft.fftfreq(n, 1.0 / n)
  keep = (np.abs(k)[:, None] < n // 2) & (np.abs(k)[None, :] < n // 2)
  w_hat[~keep] = 0
  w_hat[0, 0] = 0
  return np.real(np.fft.ifft2(w_hat))


def test_velocity_is_divergence_free_and_its_curl_is_the_vorticity():
  n = 16
  omega = _band_limited_field(n)
  with jax.enable_x64(True):
    vel = np.asarray(velocity_from_vorticity(omega))
  k = np.fft.fftfreq(n, 1.0 / n)
  kx, ky = k[:, None], k[None, :]  # axis -2 is x, axis -1 is y
  u_hat, v_hat = np.fft.fft2(vel[..., 0]), np.fft.fft2(vel[..., 1])
  div = np.real(np.fft.ifft2(1j * kx * u_hat + 1j * ky * v_hat))
  curl = np.real(np.fft.ifft2(1j * kx * v_hat - 1j * ky * u_hat))
  assert np.abs(div).max() < 1e-12 * np.abs(vel).max() * n
  np.testing.assert_allclose(curl, omega, atol=1e-12 * np.abs(omega).max())


def test_single_mode_energy_enstrophy_and_spectrum():
  n = 16
  x = grid_points(n)
  omega = np.cos(3 * x[:, None] + 4 * x[None, :])  # |k| = 5
  with jax.enable_x64(True):
    # psi = omega / 25, |u|^2 = sin^2 / 25: E = 1 / 100; Z = 1 / 4; P = 25 / 4.
    assert math.isclose(float(energy(omega)), 0.01, rel_tol=1e-12)
    assert math.isclose(float(enstrophy(omega)), 0.25, rel_tol=1e-12)
    assert math.isclose(float(palinstrophy(omega)), 6.25, rel_tol=1e-12)
    assert math.isclose(float(dissipation_rate(omega, 0.1)), 0.05,
                        rel_tol=1e-12)
    k, spec = energy_spectrum(omega)
  spec = np.asarray(spec)
  assert spec.shape == k.shape and k[0] == 0
  np.testing.assert_allclose(spec[5], 0.01, rtol=1e-12)
  np.testing.assert_allclose(np.delete(spec, 5), 0, atol=1e-15)


def test_spectrum_sums_to_energy_on_batches():
  omega = np.stack([_band_limited_field(16, s) for s in range(3)])
  with jax.enable_x64(True):
    _, spec = energy_spectrum(omega)
    np.testing.assert_allclose(np.asarray(spec).sum(-1),
                               np.asarray(energy(omega)), rtol=1e-12)


def test_coarsen_is_block_mean():
  rng = np.random.default_rng(1)
  omega = rng.normal(size=(2, 8, 8)).astype(np.float32)
  out = np.asarray(coarsen(omega, 4))
  brute = np.array([[[omega[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean()
                      for j in range(4)] for i in range(4)] for b in range(2)])
  np.testing.assert_allclose(out, brute, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(coarse_grid_points(8, 4),
                             grid_points(8).reshape(4, 2).mean(-1))
  with pytest.raises(ValueError, match="divid"):
    coarsen(omega, 3)


# ------------------------------------------------------------ vmap, data


def test_rollout_vmaps_and_matches_model_steps():
  w = np.stack([np.asarray(_random_state(SMALL, s, spin_up_steps=0))
                for s in range(2)])
  batched = np.asarray(jax.vmap(lambda v: kolmogorov_rollout(v, 2, SMALL))(
      jnp.asarray(w)))
  assert batched.shape == (2, 3, 32, 32)
  stepped = np.asarray(kolmogorov_model_step(
      kolmogorov_model_step(w[1], SMALL), SMALL))
  np.testing.assert_allclose(batched[1, 2], stepped, rtol=1e-4, atol=1e-4)


def test_dataset_layout_determinism_and_burn_in():
  key = jax.random.PRNGKey(4)
  ds = generate_kolmogorov_dataset(key, 2, 3, SMALL, burn_in_steps=2)
  assert ds["vorticity"].dims == ("trajectory", "time", "x", "y")
  assert ds["vorticity"].shape == (2, 4, 16, 16)
  assert ds["vorticity"].dtype == np.float32
  np.testing.assert_allclose(ds["time"], [0, 0.25, 0.5, 0.75])
  np.testing.assert_allclose(ds["x"], SMALL.output_grid)
  np.testing.assert_allclose(ds["y"], SMALL.output_grid)
  assert ds.attrs["system"] == "kolmogorov"
  for name in ("reynolds", "forcing_wavenumber", "drag", "model_dt",
               "resolution", "output_resolution"):
    assert ds.attrs[name] == getattr(SMALL, name)
  assert ds.attrs["burn_in_steps"] == 2
  again = generate_kolmogorov_dataset(key, 2, 3, SMALL, burn_in_steps=2)
  np.testing.assert_array_equal(ds["vorticity"], again["vorticity"])
  other = generate_kolmogorov_dataset(jax.random.PRNGKey(5), 2, 3, SMALL,
                                      burn_in_steps=2)
  assert not np.allclose(ds["vorticity"], other["vorticity"])
  # The burn-in is the first steps of the same trajectory, discarded.
  no_burn = generate_kolmogorov_dataset(key, 2, 5, SMALL, burn_in_steps=0)
  np.testing.assert_allclose(ds["vorticity"], no_burn["vorticity"][:, 2:],
                             rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------ validation


@pytest.mark.parametrize("kwargs, match", [
    (dict(resolution=33), "resolution"),
    (dict(resolution=6), "resolution"),
    (dict(output_resolution=48), "output_resolution"),
    (dict(reynolds=0.0), "reynolds"),
    (dict(reynolds=float("nan")), "reynolds"),
    (dict(forcing_wavenumber=43), "forcing_wavenumber"),
    (dict(forcing_wavenumber=2.5), "forcing_wavenumber"),
    (dict(drag=-0.1), "drag"),
    (dict(solver_dt=0.0), "solver_dt"),
    (dict(solver_dt=0.1, model_dt=0.25), "integer multiple"),
])
def test_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    KolmogorovConfig(**kwargs)


def test_bad_inputs_raise_clear_errors():
  good = np.zeros((32, 32), np.float32)
  with pytest.raises(ValueError, match="simulation grid"):
    kolmogorov_rollout(np.zeros((16, 16), np.float32), 1, SMALL)
  with pytest.raises(ValueError, match=r"\[\.\.\., N, N\]"):
    energy(np.zeros((8, 4)))
  with pytest.raises(ValueError, match="NaN"):
    kolmogorov_solver_step(np.where(good == 0, np.nan, good), SMALL)
  with pytest.raises(ValueError, match="floating"):
    enstrophy(np.zeros((8, 8), np.int32))
  with pytest.raises(ValueError, match="num_steps"):
    kolmogorov_rollout(good, -1, SMALL)
  with pytest.raises(ValueError, match="num_trajectories"):
    generate_kolmogorov_dataset(jax.random.PRNGKey(0), 0, 2, SMALL)
  with pytest.raises(ValueError, match="dt"):
    kolmogorov_solver_step(good, SMALL, dt=-1.0)
