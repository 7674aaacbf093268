"""Kuramoto-Sivashinsky equation, pseudo-spectral ETDRK4 solver in JAX.

    u_t + u u_x + u_xx + u_xxxx = 0,   x in [0, L) periodic.

In Fourier space (jnp.fft.rfft, wavenumbers k = 2 pi m / L) the equation is
u_hat_t = c(k) u_hat + N(u_hat) with the linear operator c(k) = k^2 - k^4 and
the nonlinear term N(u_hat) = -(i k / 2) FFT(u^2) (since u u_x = (u^2 / 2)_x).
Time stepping is the exponential time-differencing fourth-order Runge-Kutta
scheme ETDRK4 (Cox & Matthews 2002, J. Comput. Phys. 176, 430), whose
phi-functions are evaluated by the contour-integral mean of Kassam & Trefethen
2005 (SIAM J. Sci. Comput. 26, 1214, eq. 2.5-2.6: M = 32 points on a circle of
radius 1 around each h c(k)); this avoids the cancellation error of the direct
formulae for small |h c(k)|. The scheme is fourth order in h (shared with
the Kolmogorov solver: gencast_control.systems.etdrk4).

The mode k = 0 has c = 0 and N = 0, so the spatial mean of u is conserved
exactly (up to rounding).

Dealiasing: by default the nonlinear term is not dealiased, as in Kassam &
Trefethen's reference code (kursiv.m). With `KSConfig(dealias=True)` the 2/3
rule (Orszag 1971) zeroes the nonlinear term on the modes |m| >= N/3. Measured
at N = 128, L = 32 pi on the attractor: mean |u_hat_m| / N is ~0.3 at m = 10,
~3e-3 at m = 40 and ~6e-5 at m = 60, so aliasing is a perturbation of relative
size ~1e-3; the two variants agree to round-off while the solution is smooth
and, the dynamics being chaotic, decorrelate after ~100 time units (their
statistics agree). Use dealias=True on coarser grids.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gencast_control.systems import check_time_steps, etdrk4

SYSTEM_NAME = "kuramoto_sivashinsky"


@dataclasses.dataclass(frozen=True)
class KSConfig:
  """Grid and time steps of the KS solver.

  Attributes:
    num_points: grid points N (even, >= 8).
    domain_length: period L of the domain.
    solver_dt: ETDRK4 step h.
    model_dt: time between two stored states (one ARDM step); an integer
      multiple of solver_dt.
    dealias: apply the 2/3 rule to the nonlinear term.
  """
  num_points: int = 128
  domain_length: float = 32 * math.pi
  solver_dt: float = 0.25
  model_dt: float = 1.0
  dealias: bool = False

  def __post_init__(self):
    if (not isinstance(self.num_points, (int, np.integer))
        or self.num_points < 8 or self.num_points % 2):
      raise ValueError(f"num_points must be an even integer >= 8, got"
                       f" {self.num_points!r}")
    if not (math.isfinite(self.domain_length) and self.domain_length > 0):
      raise ValueError(f"domain_length must be finite and > 0, got"
                       f" {self.domain_length!r}")
    check_time_steps(self.solver_dt, self.model_dt)

  @property
  def substeps(self) -> int:
    """Solver steps per model step, model_dt / solver_dt."""
    return int(round(self.model_dt / self.solver_dt))

  @property
  def grid(self) -> np.ndarray:
    """Grid positions x_i = i L / N, i = 0..N-1."""
    return np.arange(self.num_points) * self.domain_length / self.num_points

  @property
  def wavenumbers(self) -> np.ndarray:
    """k_m = 2 pi m / L for the rfft modes m = 0..N/2."""
    n = self.num_points
    return 2 * np.pi / self.domain_length * np.fft.rfftfreq(n, 1.0 / n)


@functools.lru_cache(maxsize=64)
def _nonlinear_coefficient(config: KSConfig) -> np.ndarray:
  """g = -ik/2 of N(v) = g FFT(u^2), zero above 2/3 of the modes if dealias."""
  k = config.wavenumbers
  g = -0.5j * k
  if config.dealias:
    modes = np.arange(len(k))
    g = np.where(modes < config.num_points / 3, g, 0)
  return g


def _check_state(u, config: KSConfig) -> None:
  if u.ndim < 1 or u.shape[-1] != config.num_points:
    raise ValueError(f"KS state must have shape [..., {config.num_points}]"
                     f" (num_points), got {tuple(u.shape)}")


def make_solver_step(config: KSConfig, dt: float | None = None
                     ) -> Callable[[jax.Array], jax.Array]:
  """One ETDRK4 step u -> u(t + dt) on the grid, u [..., X] (jit/vmap-able).

  dt defaults to config.solver_dt (any dt > 0 may be given, e.g. for
  convergence studies).
  """
  dt = config.solver_dt if dt is None else float(dt)
  if not dt > 0:
    raise ValueError(f"dt must be > 0, got {dt}")
  k = config.wavenumbers
  c = etdrk4.Coefficients(*map(jnp.asarray,
                               etdrk4.coefficients(k**2 - k**4, dt)))
  g = jnp.asarray(_nonlinear_coefficient(config))
  n = config.num_points

  def nonlinear(v):
    return g * jnp.fft.rfft(jnp.fft.irfft(v, n)**2)

  def step(u):
    _check_state(u, config)
    v = etdrk4.step(c, nonlinear, jnp.fft.rfft(u))
    return jnp.fft.irfft(v, n).astype(u.dtype)

  return step


def ks_solver_step(u: jax.Array, config: KSConfig) -> jax.Array:
  """Advances u [..., X] by one solver step h = config.solver_dt."""
  return make_solver_step(config)(u)


def ks_model_step(u: jax.Array, config: KSConfig) -> jax.Array:
  """Advances u [..., X] by model_dt (config.substeps solver steps)."""
  step = make_solver_step(config)
  return jax.lax.fori_loop(0, config.substeps, lambda _, v: step(v), u)


def ks_state_step(x: jax.Array, config: KSConfig) -> jax.Array:
  """`ks_model_step` of channel-last states [B, X, C], channel by channel
  (the EnKF's model, `systems.registry.System.model_step`)."""
  return jnp.moveaxis(ks_model_step(jnp.moveaxis(x, -1, 1), config), 1, -1)


def state_shape(config: KSConfig) -> tuple[int, ...]:
  """[X, C] of the states `ks_state_step` takes: one channel u."""
  return (config.num_points, 1)


def ks_rollout(u0: jax.Array, num_steps: int, config: KSConfig) -> jax.Array:
  """States [num_steps + 1, ..., X] at model times 0, model_dt, ... (incl. u0).

  A lax.scan over model steps; works under jit (num_steps static) and vmap.
  """
  if int(num_steps) != num_steps or num_steps < 0:
    raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}")
  u0 = jnp.asarray(u0)
  _check_state(u0, config)
  step = make_solver_step(config)

  def model_step(u, _):
    u = jax.lax.fori_loop(0, config.substeps, lambda _, v: step(v), u)
    return u, u

  _, states = jax.lax.scan(model_step, u0, None, length=int(num_steps))
  return jnp.concatenate([u0[None], states])


def ks_random_initial_condition(key: jax.Array, config: KSConfig,
                                num_modes: int = 8) -> jax.Array:
  """A smooth zero-mean field [X] on the lowest Fourier modes.

  u0(x) = sum_{m=1}^{M} a_m / m cos(2 pi m x / L + phi_m), a_m ~ N(0, 1),
  phi_m ~ U[0, 2 pi), M = num_modes.
  """
  n = config.num_points
  if not 1 <= num_modes <= n // 2:
    raise ValueError(f"num_modes must be in [1, {n // 2}], got"
                     f" {num_modes}")
  k1, k2 = jax.random.split(key)
  amp = jax.random.normal(k1, (num_modes,)) / jnp.arange(1, num_modes + 1)
  phase = jax.random.uniform(k2, (num_modes,), maxval=2 * jnp.pi)
  x = 2 * jnp.pi * jnp.arange(n) / n
  modes = jnp.arange(1, num_modes + 1)
  return jnp.sum(amp[:, None] * jnp.cos(modes[:, None] * x[None, :]
                                        + phase[:, None]), axis=0)


def ks_total_variation(u: jax.Array) -> jax.Array:
  """Periodic total variation TV(u) = sum_i |u_{i+1} - u_i| over the last axis.

  Index i + 1 wraps around (u_N = u_0).
  """
  u = jnp.asarray(u)
  if u.ndim < 1:
    raise ValueError("ks_total_variation needs an array with a spatial axis")
  return jnp.sum(jnp.abs(jnp.roll(u, -1, axis=-1) - u), axis=-1)


def generate_ks_dataset(key: jax.Array, num_trajectories: int, num_steps: int,
                        config: KSConfig = KSConfig(),
                        burn_in_steps: int = 200) -> xr.Dataset:
  """Trajectories on the attractor: variable u with dims (trajectory, time, x).

  Each trajectory starts from ks_random_initial_condition (its own key from
  jax.random.split), runs `burn_in_steps` model steps that are discarded (to
  land on the chaotic attractor), then stores num_steps + 1 states at model
  times 0, model_dt, ..., num_steps * model_dt. Trajectories are simulated
  together under vmap; the result is stored as float32 and is deterministic
  for a given key.
  """
  for name, value, low in (("num_trajectories", num_trajectories, 1),
                           ("num_steps", num_steps, 1),
                           ("burn_in_steps", burn_in_steps, 0)):
    if int(value) != value or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
  keys = jax.random.split(key, int(num_trajectories))
  dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

  @jax.jit
  @jax.vmap
  def simulate(k):
    u0 = ks_random_initial_condition(k, config).astype(dtype)
    if burn_in_steps:
      u0 = ks_rollout(u0, int(burn_in_steps), config)[-1]
    return ks_rollout(u0, int(num_steps), config)

  states = np.asarray(simulate(keys), np.float32)
  if not np.isfinite(states).all():
    raise FloatingPointError("KS simulation diverged (non-finite values);"
                             " reduce solver_dt")
  return xr.Dataset(
      {"u": (("trajectory", "time", "x"), states)},
      coords={"trajectory": np.arange(int(num_trajectories)),
              "time": np.arange(int(num_steps) + 1) * float(config.model_dt),
              "x": config.grid},
      attrs={"system": SYSTEM_NAME, "model_dt": float(config.model_dt),
             "solver_dt": float(config.solver_dt),
             "domain_length": float(config.domain_length),
             "num_points": int(config.num_points),
             "dealias": int(config.dealias),
             "burn_in_steps": int(burn_in_steps)})


def generate_ks_splits(out_dir, seed: int | jax.Array,
                       counts: tuple[int, int, int] = (16, 4, 4),
                       num_steps: int = 200, config: KSConfig = KSConfig(),
                       burn_in_steps: int = 200,
                       format: str = "netcdf") -> dict[str, Path]:  # noqa: A002
  """Simulates and writes out_dir/{train,validation,test}.nc (or .zarr).

  seed is an int or a PRNG key; split i uses jax.random.fold_in(key, i), so
  the splits are independent and each is reproducible on its own.
  """
  from gencast_control.data import trajectories  # local: keeps ks.py import-light

  if len(counts) != 3:
    raise ValueError(f"counts must be (train, validation, test), got {counts}")
  key = (jax.random.PRNGKey(seed) if isinstance(seed, (int, np.integer))
         else seed)
  datasets = {
      split: generate_ks_dataset(jax.random.fold_in(key, i), count, num_steps,
                                 config, burn_in_steps=burn_in_steps)
      for i, (split, count) in enumerate(zip(trajectories.SPLITS, counts))
  }
  return trajectories.write_splits(datasets, out_dir, format)
