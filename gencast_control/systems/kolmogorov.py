"""2-D Kolmogorov flow: pseudo-spectral ETDRK4 solver in JAX, diagnostics, data.

Incompressible Navier-Stokes in vorticity form on the periodic square
[0, 2 pi)^2 (unit density):

    omega_t + u . grad(omega) = nu Lap(omega) - alpha omega + f,

with nu = 1 / Re, a linear (Rayleigh) drag -alpha u on the velocity, i.e.
-alpha omega on the vorticity, and the Kolmogorov forcing of Kochkov et al.
2021 (PNAS 118, e2101784118: Re = 1000, k_f = 4, alpha = 0.1; the drag removes
the energy that the inverse cascade piles up at the largest scales).

Conventions (sign of the forcing): arrays are indexed omega[..., i, j] with
x_i = 2 pi i / N along axis -2 and y_j = 2 pi j / N along axis -1. The
vorticity is omega = d_x v - d_y u, the streamfunction psi solves
Lap(psi) = -omega and u = d_y psi, v = -d_x psi (divergence-free by
construction). The body force is F = sin(k_f y) e_x, so the vorticity forcing
is f = curl F = d_x F_y - d_y F_x = -k_f cos(k_f y). (Writing
f = +k_f cos(k_f y) instead is the same flow shifted by pi / k_f in y.)
`forcing_wavenumber=0` switches the forcing off. The k = 0 mode of the velocity
(a uniform drift) is taken to be zero; the mean of omega is not coupled to the
dynamics (it only decays under the drag).

Spatial discretisation: Fourier pseudo-spectral with jnp.fft.rfft2 and the 2/3
rule (Orszag 1971): the fields entering the product u . grad(omega) and the
product itself are truncated to |k_x|, |k_y| < N / 3. The semi-discrete system
is then the Galerkin truncation of the equations, which conserves energy and
enstrophy exactly when nu = alpha = f = 0, and obeys the budgets exactly
(<.> = mean over the domain, E = <|u|^2> / 2, Z = <omega^2> / 2,
P = <|grad omega|^2> / 2):

    dE/dt = <u . F>     - 2 nu Z - 2 alpha E,
    dZ/dt = <omega f>   - 2 nu P - 2 alpha Z.

Time stepping: exponential time differencing RK4, ETDRK4 (Cox & Matthews 2002,
J. Comput. Phys. 176, 430), with the coefficients computed by the contour
integrals of Kassam & Trefethen 2005 (SIAM J. Sci. Comput. 26, 1214), as in
`gencast_control.systems.ks` (both through gencast_control.systems.etdrk4). The
diagonal linear part L(k) = -nu |k|^2 - alpha is integrated exactly (no viscous time-step limit); the advection and the
constant forcing go through the four RK stages (a constant forcing and a steady
state L w + f = 0 are reproduced exactly). With L = 0 (nu = alpha = 0) the
scheme is classical RK4, whose stability interval on the imaginary axis is
|h lambda| <= 2 sqrt(2). The advective eigenvalues obey
|lambda| <= k_max max(|u| + |v|) with k_max = N / 3, hence the CFL-type
limit of `cfl_time_step`.
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

SYSTEM_NAME = "kolmogorov"
DOMAIN_LENGTH = 2 * math.pi
_RK4_IMAGINARY_STABILITY = 2 * math.sqrt(2)


def cfl_time_step(resolution: int, max_velocity: float,
                  safety: float = 0.5) -> float:
  """Largest stable solver step times `safety`: h = safety 2 sqrt(2) / lambda.

  lambda = (resolution / 3) * 2 max_velocity bounds the advective eigenvalue
  i (k_x u + k_y v) on the dealiased modes (|k_x|, |k_y| < N / 3, |u|, |v| <=
  max_velocity); 2 sqrt(2) is RK4's stability limit on the imaginary axis.
  Expressed with dx = 2 pi / N this is h = C dx / max_velocity with Courant
  number C = safety * 3 sqrt(2) / (2 pi) ~ 0.68 safety.
  """
  if not isinstance(resolution, (int, np.integer)) or resolution < 1:
    raise ValueError(f"resolution must be a positive integer, got"
                     f" {resolution!r}")
  if not (max_velocity > 0 and math.isfinite(max_velocity)):
    raise ValueError(f"max_velocity must be finite and > 0, got {max_velocity}")
  if not 0 < safety <= 1:
    raise ValueError(f"safety must be in (0, 1], got {safety}")
  return safety * _RK4_IMAGINARY_STABILITY / (resolution / 3 * 2 * max_velocity)


@dataclasses.dataclass(frozen=True)
class KolmogorovConfig:
  """Physics, grids and time steps of the Kolmogorov-flow solver.

  Attributes:
    resolution: simulation grid N x N (even, >= 8).
    output_resolution: grid of the stored data (for the ARDM), obtained by
      block averaging (see `coarsen`); divides `resolution`.
    reynolds: Re, viscosity nu = 1 / Re; math.inf gives nu = 0.
    forcing_wavenumber: k_f of F = sin(k_f y) e_x; 0 means no forcing. Must be
      kept by the 2/3 rule (k_f < N / 3).
    drag: linear drag coefficient alpha >= 0.
    solver_dt: ETDRK4 step h. Default 1/256 ~ 0.0039: on the attractor at
      N = 128 (Re 1000) max(|u| + |v|) ~ 6.5, so h k_max max(|u| + |v|) ~ 1.1,
      40% of RK4's limit 2 sqrt(2) (see cfl_time_step). Halve it when doubling
      the resolution.
    model_dt: time between stored states (one ARDM step), an integer multiple
      of solver_dt. Default 0.25 (64 solver steps), about a quarter of the
      large-eddy turnover time (2 pi / k_f) / u_rms ~ 1.1: measured on the
      64^2 output grid, the correlation of consecutive vorticity frames is
      ~0.8 (relative L2 change ~0.6), 0.6 at lag 0.5 and 0.4 at lag 1, so
      each step changes the field noticeably yet stays predictable.
  """
  resolution: int = 128
  output_resolution: int = 64
  reynolds: float = 1000.0
  forcing_wavenumber: int = 4
  drag: float = 0.1
  solver_dt: float = 1 / 256
  model_dt: float = 0.25

  def __post_init__(self):
    n = self.resolution
    if not isinstance(n, (int, np.integer)) or n < 8 or n % 2:
      raise ValueError(f"resolution must be an even integer >= 8, got {n!r}")
    m = self.output_resolution
    if not isinstance(m, (int, np.integer)) or m < 1 or n % m:
      raise ValueError(f"output_resolution must be a positive integer that"
                       f" divides resolution ({n}), got {m!r}")
    if not (self.reynolds > 0):  # also rejects NaN; math.inf is allowed
      raise ValueError(f"reynolds must be > 0 (math.inf for nu = 0), got"
                       f" {self.reynolds!r}")
    kf = self.forcing_wavenumber
    if not isinstance(kf, (int, np.integer)) or kf < 0 or 3 * kf >= n:
      raise ValueError(f"forcing_wavenumber must be an integer in [0, N/3)"
                       f" = [0, {n / 3:.4g}) so that the 2/3 rule keeps it,"
                       f" got {kf!r}")
    if not (math.isfinite(self.drag) and self.drag >= 0):
      raise ValueError(f"drag must be finite and >= 0, got {self.drag!r}")
    check_time_steps(self.solver_dt, self.model_dt)

  @property
  def viscosity(self) -> float:
    """nu = 1 / Re (0 for Re = inf)."""
    return 0.0 if math.isinf(self.reynolds) else 1.0 / self.reynolds

  @property
  def substeps(self) -> int:
    """Solver steps per model step, model_dt / solver_dt."""
    return int(round(self.model_dt / self.solver_dt))

  @property
  def coarsening_factor(self) -> int:
    """resolution / output_resolution."""
    return self.resolution // self.output_resolution

  @property
  def grid(self) -> np.ndarray:
    """Simulation grid positions 2 pi i / N (the same along x and y)."""
    return grid_points(self.resolution)

  @property
  def output_grid(self) -> np.ndarray:
    """Positions of the block means stored in datasets (see `coarsen`)."""
    return coarse_grid_points(self.resolution, self.output_resolution)


# ------------------------------------------------------------ grids, spectra


def grid_points(n: int) -> np.ndarray:
  """x_i = 2 pi i / n, i = 0..n-1."""
  return np.arange(n) * DOMAIN_LENGTH / n


def coarse_grid_points(resolution: int, output_resolution: int) -> np.ndarray:
  """Centroids of the blocks averaged by `coarsen`.

  Block j averages the fine points r j .. r j + r - 1 (r = resolution /
  output_resolution), whose mean position is (r j + (r - 1) / 2) 2 pi / N.
  """
  r = resolution // output_resolution
  return (r * np.arange(output_resolution) + (r - 1) / 2) * DOMAIN_LENGTH / (
      resolution)


def _wavenumbers(n: int, zero_nyquist: bool):
  """Integer k_x [n, 1] (fft axis -2) and k_y [1, n//2+1] (rfft axis -1)."""
  kx = np.fft.fftfreq(n, 1.0 / n)[:, None]
  ky = np.fft.rfftfreq(n, 1.0 / n)[None, :]
  if zero_nyquist and n % 2 == 0:
    # The Nyquist mode has no sign; its derivative is set to zero (standard).
    kx = np.where(np.abs(kx) == n // 2, 0.0, kx)
    ky = np.where(ky == n // 2, 0.0, ky)
  return kx, ky


def _inverse_laplacian(n: int) -> np.ndarray:
  """1 / |k|^2, 0 at k = 0, shape [n, n//2+1]: psi_hat = omega_hat / |k|^2."""
  kx, ky = _wavenumbers(n, zero_nyquist=False)
  k2 = kx**2 + ky**2
  return np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)


def _dealias_mask(n: int) -> np.ndarray:
  """2/3 rule: 1 where |k_x|, |k_y| < n / 3, else 0; shape [n, n//2+1]."""
  kx, ky = _wavenumbers(n, zero_nyquist=False)
  return ((3 * np.abs(kx) < n) & (3 * np.abs(ky) < n)).astype(np.float64)


def _forcing_field(n: int, forcing_wavenumber: int) -> np.ndarray:
  """f(x, y) = curl(sin(k_f y) e_x) = -k_f cos(k_f y) on the n x n grid."""
  y = grid_points(n)[None, :]
  return np.broadcast_to(-forcing_wavenumber * np.cos(forcing_wavenumber * y),
                         (n, n))


def _body_force_x(n: int, forcing_wavenumber: int) -> np.ndarray:
  """F_x(x, y) = sin(k_f y) on the n x n grid (F_y = 0)."""
  y = grid_points(n)[None, :]
  return np.broadcast_to(np.sin(forcing_wavenumber * y), (n, n))


# ------------------------------------------------------------ input checks


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _check_vorticity(omega, resolution: int | None = None,
                     name: str = "omega") -> jax.Array:
  """Returns omega as a real jax array [..., N, N]; clear errors otherwise."""
  if not _is_traced(omega):
    omega = np.asarray(omega) if not isinstance(omega, jax.Array) else omega
  if not jnp.issubdtype(omega.dtype, jnp.floating):
    raise ValueError(f"{name} must be a real floating-point array, got dtype"
                     f" {omega.dtype}")
  shape = tuple(omega.shape)
  if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 2:
    raise ValueError(f"{name} must have shape [..., N, N] (x, y), got {shape}")
  if resolution is not None and shape[-1] != resolution:
    raise ValueError(f"{name} must be on the {resolution} x {resolution}"
                     f" simulation grid (config.resolution), got {shape}")
  if not _is_traced(omega) and not bool(np.isfinite(np.asarray(omega)).all()):
    raise ValueError(f"{name} contains NaN or inf values")
  return jnp.asarray(omega)


# ------------------------------------------------------------------- solver


@functools.lru_cache(maxsize=64)
def _linear_operator(config: KolmogorovConfig) -> np.ndarray:
  """L(k) = -nu |k|^2 - alpha on the rfft2 modes (float64)."""
  kx, ky = _wavenumbers(config.resolution, zero_nyquist=False)
  return -config.viscosity * (kx**2 + ky**2) - config.drag


def _spectral_step(config: KolmogorovConfig, dt: float, real_dtype
                   ) -> Callable[[jax.Array], jax.Array]:
  """One ETDRK4 step on omega_hat = rfft2(omega) [..., N, N//2+1]."""
  n = config.resolution
  cast = lambda a: jnp.asarray(a, real_dtype)  # noqa: E731
  c = etdrk4.Coefficients(*map(cast, etdrk4.coefficients(
      _linear_operator(config), dt)))
  kx, ky = _wavenumbers(n, zero_nyquist=False)
  mask = _dealias_mask(n)
  out_mask = mask.copy()
  out_mask[0, 0] = 0.0  # <u . grad omega> = 0 exactly; drop rounding
  inv_lap = _inverse_laplacian(n)
  # Operators applied to the truncated omega_hat: u_hat = i k_y psi_hat,
  # v_hat = -i k_x psi_hat, (d_x omega)_hat = i k_x omega_hat, likewise y.
  ops = [cast(mask * ky * inv_lap), cast(-mask * kx * inv_lap),
         cast(mask * kx), cast(mask * ky)]
  out_mask = cast(out_mask)
  forcing = np.fft.rfft2(_forcing_field(n, config.forcing_wavenumber))
  f_hat = jnp.asarray(forcing, jnp.result_type(real_dtype, jnp.complex64))

  def nonlinear(w_hat):
    u, v, wx, wy = (jnp.fft.irfft2(1j * op * w_hat, s=(n, n)) for op in ops)
    return f_hat - out_mask * jnp.fft.rfft2(u * wx + v * wy)

  return lambda w: etdrk4.step(c, nonlinear, w)


def _model_step(config: KolmogorovConfig, real_dtype):
  step = _spectral_step(config, config.solver_dt, real_dtype)
  return lambda w: jax.lax.fori_loop(0, config.substeps, lambda _, v: step(v),
                                     w)


def kolmogorov_solver_step(omega: jax.Array, config: KolmogorovConfig,
                           dt: float | None = None) -> jax.Array:
  """Advances omega [..., N, N] by one ETDRK4 step (dt defaults to solver_dt).

  jit/vmap-able; N = config.resolution. Any dt > 0 may be given (e.g. for
  convergence or budget checks).
  """
  dt = config.solver_dt if dt is None else float(dt)
  if not (dt > 0 and math.isfinite(dt)):
    raise ValueError(f"dt must be finite and > 0, got {dt}")
  omega = _check_vorticity(omega, config.resolution)
  n = config.resolution
  step = _spectral_step(config, dt, omega.dtype)
  return jnp.fft.irfft2(step(jnp.fft.rfft2(omega)), s=(n, n)).astype(
      omega.dtype)


def kolmogorov_model_step(omega: jax.Array, config: KolmogorovConfig
                          ) -> jax.Array:
  """Advances omega [..., N, N] by model_dt (config.substeps solver steps)."""
  omega = _check_vorticity(omega, config.resolution)
  n = config.resolution
  w = _model_step(config, omega.dtype)(jnp.fft.rfft2(omega))
  return jnp.fft.irfft2(w, s=(n, n)).astype(omega.dtype)


def _rollout(omega0: jax.Array, num_steps: int, config: KolmogorovConfig,
             readout: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """readout(omega) at model times 0..num_steps, stacked on a new axis 0."""
  n = config.resolution
  advance = _model_step(config, omega0.dtype)

  def frame(w_hat):
    return readout(jnp.fft.irfft2(w_hat, s=(n, n)).astype(omega0.dtype))

  def body(w_hat, _):
    w_hat = advance(w_hat)
    return w_hat, frame(w_hat)

  w0 = jnp.fft.rfft2(omega0)
  _, frames = jax.lax.scan(body, w0, None, length=int(num_steps))
  return jnp.concatenate([frame(w0)[None], frames])


def _check_count(name: str, value, low: int) -> int:
  if isinstance(value, bool) or int(value) != value or value < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
  return int(value)


def kolmogorov_rollout(omega0: jax.Array, num_steps: int,
                       config: KolmogorovConfig) -> jax.Array:
  """States [num_steps + 1, ..., N, N] at model times 0, model_dt, ... (incl.
  omega0) on the simulation grid.

  A lax.scan over model steps (the state is carried in Fourier space); works
  under jit (num_steps static) and vmap.
  """
  num_steps = _check_count("num_steps", num_steps, 0)
  omega0 = _check_vorticity(omega0, config.resolution, "omega0")
  return _rollout(omega0, num_steps, config, lambda w: w)


# ------------------------------------------------------------- coarsening


def coarsen(omega: jax.Array, output_resolution: int) -> jax.Array:
  """Block average [..., N, N] -> [..., M, M] over r x r blocks, r = N / M.

  Block averaging (not spectral truncation): the coarse value is the mean of
  the r^2 fine values, so the domain mean is kept exactly and no Gibbs
  ringing appears; its position is the blocks' centroid (coarse_grid_points).
  """
  omega = _check_vorticity(omega)
  n = omega.shape[-1]
  if (isinstance(output_resolution, bool) or int(output_resolution)
      != output_resolution or output_resolution < 1 or n % output_resolution):
    raise ValueError(f"output_resolution must be a positive integer dividing"
                     f" the grid size {n}, got {output_resolution!r}")
  m = int(output_resolution)
  r = n // m
  blocks = omega.reshape(omega.shape[:-2] + (m, r, m, r))
  return blocks.mean(axis=(-3, -1))


# ------------------------------------------------------------ diagnostics


def lift(omega, resolution: int):
  """Band-limited inverse of `kolmogorov.coarsen`: [..., m, m] block means
  -> [..., N, N] (traceable).

  A block mean of r = N / m fine points is the fine field filtered by the
  Dirichlet kernel H(k) = sin(pi k r / N) / (r sin(pi k / N)) and sampled at
  the block centroids (offset x0 = (r - 1) / 2 fine cells). The lift is the
  band-limited field with Fourier coefficients X(k) e^{-i k x0} / H(k) on the
  fine grid, so coarsen(lift(x)) = x for every mode |k| < m / 2 (the coarse
  Nyquist modes, whose sign of k is ambiguous, are dropped). Sub-grid detail
  is not recoverable from block means; the fine solver regenerates it.
  """
  m = omega.shape[-1]
  r = resolution // m
  k1 = np.fft.fftfreq(m, 1.0 / m)
  k2 = np.arange(m // 2 + 1)

  def factor(k):
    k = k.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
      h = np.where(k == 0, 1.0, np.sin(np.pi * k * r / resolution)
                   / (r * np.sin(np.pi * k / resolution)))
    phase = np.exp(-2j * np.pi * k * (r - 1) / 2 / resolution)
    keep = np.abs(k) < m / 2
    return np.where(keep, phase / h, 0.0)

  gain = (factor(k1)[:, None] * factor(k2)[None, :] * r**2).astype(np.complex64)
  coarse = jnp.fft.rfft2(omega) * gain
  fine = jnp.zeros(omega.shape[:-2] + (resolution, resolution // 2 + 1),
                   coarse.dtype)
  rows = np.mod(k1.astype(int), resolution)
  fine = fine.at[..., rows, :m // 2 + 1].set(coarse)
  return jnp.fft.irfft2(fine, s=(resolution, resolution)).astype(omega.dtype)


def kolmogorov_state_step(x: jax.Array, config: KolmogorovConfig
                          ) -> jax.Array:
  """One true-model step of vorticity states [B, m, m, 1] on the output grid
  (traceable; the EnKF's model, `systems.registry.System.model_step`).

  The truth is made by the fine N x N solver followed by block averaging, so
  the model is that same solver on the band-limited lift of the state,
  coarsen(fine_step(lift(x))). (Running the solver at m x m would be 4x
  cheaper but adds model error at Re = 1000; the lift's missing sub-grid
  detail is a representativeness error instead.)
  """
  omega = x[..., 0]
  if config.output_resolution != config.resolution:
    omega = lift(omega, config.resolution)
  omega = kolmogorov_model_step(omega, config)
  if config.output_resolution != config.resolution:
    omega = coarsen(omega, config.output_resolution)
  return omega[..., None]


def state_shape(config: KolmogorovConfig) -> tuple[int, ...]:
  """[m, m, 1] of the states `kolmogorov_state_step` takes."""
  m = config.output_resolution
  return (m, m, 1)


def _gradient(omega: jax.Array):
  """Spectral (d_x omega, d_y omega), Nyquist derivative set to zero."""
  n = omega.shape[-1]
  kx, ky = _wavenumbers(n, zero_nyquist=True)
  w_hat = jnp.fft.rfft2(omega)
  return tuple(jnp.fft.irfft2(1j * jnp.asarray(k, omega.dtype) * w_hat,
                              s=(n, n)) for k in (kx, ky))


def velocity_from_vorticity(omega: jax.Array) -> jax.Array:
  """Velocity [..., N, N, 2] (channels u, v) of omega [..., N, N].

  psi_hat = omega_hat / |k|^2 (Lap psi = -omega, psi_hat(0) = 0), u = d_y psi,
  v = -d_x psi, derivatives in Fourier space with the Nyquist wavenumber set to
  zero. Divergence-free; curl(u) = omega up to the mean and the Nyquist modes.
  Works on any square grid of the 2 pi-periodic domain.
  """
  omega = _check_vorticity(omega)
  n = omega.shape[-1]
  kx, ky = _wavenumbers(n, zero_nyquist=True)
  psi_hat = jnp.fft.rfft2(omega) * jnp.asarray(_inverse_laplacian(n),
                                               omega.dtype)
  u = jnp.fft.irfft2(1j * jnp.asarray(ky, omega.dtype) * psi_hat, s=(n, n))
  v = jnp.fft.irfft2(-1j * jnp.asarray(kx, omega.dtype) * psi_hat, s=(n, n))
  return jnp.stack([u, v], axis=-1).astype(omega.dtype)


def energy(omega: jax.Array) -> jax.Array:
  """Kinetic energy per unit area E = <u^2 + v^2> / 2 (domain mean), [...]."""
  vel = velocity_from_vorticity(omega)
  return 0.5 * jnp.mean(jnp.sum(vel**2, axis=-1), axis=(-2, -1))


def enstrophy(omega: jax.Array) -> jax.Array:
  """Enstrophy per unit area Z = <omega^2> / 2, [...]."""
  omega = _check_vorticity(omega)
  return 0.5 * jnp.mean(omega**2, axis=(-2, -1))


def palinstrophy(omega: jax.Array) -> jax.Array:
  """Palinstrophy per unit area P = <|grad omega|^2> / 2, [...]."""
  omega = _check_vorticity(omega)
  wx, wy = _gradient(omega)
  return 0.5 * jnp.mean(wx**2 + wy**2, axis=(-2, -1))


def dissipation_rate(omega: jax.Array, nu: float) -> jax.Array:
  """Viscous energy dissipation rate eps = nu <|grad u|^2> = 2 nu Z, [...].

  For a periodic incompressible flow <|grad u|^2> = <omega^2>, so
  eps = nu <omega^2> = 2 nu Z with Z = enstrophy(omega).
  """
  if not (nu >= 0 and math.isfinite(nu)):
    raise ValueError(f"nu must be finite and >= 0, got {nu!r}")
  return 2.0 * nu * enstrophy(omega)


def energy_input(omega: jax.Array, config: KolmogorovConfig) -> jax.Array:
  """Power of the body force <u . F> = <u sin(k_f y)>, [...]."""
  vel = velocity_from_vorticity(omega)
  force = _body_force_x(vel.shape[-2], config.forcing_wavenumber)
  return jnp.mean(vel[..., 0] * jnp.asarray(force, vel.dtype), axis=(-2, -1))


def enstrophy_input(omega: jax.Array, config: KolmogorovConfig) -> jax.Array:
  """Enstrophy input by the forcing <omega f>, f = -k_f cos(k_f y), [...]."""
  omega = _check_vorticity(omega)
  f = _forcing_field(omega.shape[-1], config.forcing_wavenumber)
  return jnp.mean(omega * jnp.asarray(f, omega.dtype), axis=(-2, -1))


def energy_spectrum(omega: jax.Array) -> tuple[np.ndarray, jax.Array]:
  """Isotropic shell-summed energy spectrum: (k [K], E(k) [..., K]).

  E(k) = sum over wavevectors with round(|k|) = k of (|u_hat|^2 + |v_hat|^2)
  / (2 N^4) (full fft2 of the velocity of `velocity_from_vorticity`), so that
  sum_k E(k) = energy(omega) (Parseval). Shells run k = 0..round(N / sqrt(2));
  those beyond N / 2 are only partly filled by the square grid.
  """
  vel = velocity_from_vorticity(omega)
  n = vel.shape[-2]
  vel_hat = jnp.fft.fft2(vel, axes=(-3, -2))
  density = 0.5 * jnp.sum(jnp.abs(vel_hat)**2, axis=-1) / n**4
  k1 = np.fft.fftfreq(n, 1.0 / n)
  shell = np.rint(np.hypot(k1[:, None], k1[None, :])).astype(int).ravel()
  num_shells = int(shell.max()) + 1
  onehot = np.zeros((n * n, num_shells), np.float64)
  onehot[np.arange(n * n), shell] = 1.0
  spectrum = density.reshape(density.shape[:-2] + (n * n,)) @ jnp.asarray(
      onehot, density.dtype)
  return np.arange(num_shells), spectrum


# ------------------------------------------------------------------- data


def kolmogorov_random_initial_condition(key: jax.Array,
                                        config: KolmogorovConfig,
                                        peak_wavenumber: float = 4.0,
                                        initial_energy: float = 1.0
                                        ) -> jax.Array:
  """A smooth random zero-mean vorticity field [N, N] on the simulation grid.

  Gaussian random field: white noise filtered in Fourier space so that its
  energy spectrum is E(k) ~ k^4 exp(-2 (k / k_0)^2) (peak at k_0 =
  peak_wavenumber), truncated by the 2/3 rule, then scaled to energy
  `initial_energy`. It is far from the attractor: discard a burn-in.
  """
  if not (peak_wavenumber > 0 and initial_energy > 0):
    raise ValueError("peak_wavenumber and initial_energy must be > 0, got"
                     f" {peak_wavenumber}, {initial_energy}")
  n = config.resolution
  dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
  noise = jax.random.normal(key, (n, n), dtype)
  kx, ky = _wavenumbers(n, zero_nyquist=False)
  k = np.hypot(kx, ky)
  # omega_hat amplitude a(k): E(k) ~ 2 pi k a^2 / k^2 ~ k^4 exp(-2 k^2 / k0^2).
  amplitude = k**2.5 * np.exp(-(k / peak_wavenumber)**2) * _dealias_mask(n)
  amplitude[0, 0] = 0.0
  omega = jnp.fft.irfft2(jnp.fft.rfft2(noise) * jnp.asarray(amplitude, dtype),
                         s=(n, n))
  return omega * jnp.sqrt(initial_energy / energy(omega))


def generate_kolmogorov_dataset(key: jax.Array, num_trajectories: int,
                                num_steps: int,
                                config: KolmogorovConfig = KolmogorovConfig(),
                                burn_in_steps: int = 160) -> xr.Dataset:
  """Trajectories on the attractor: `vorticity` (trajectory, time, x, y).

  Each trajectory starts from kolmogorov_random_initial_condition (its own
  key from jax.random.split), runs `burn_in_steps` model steps on the
  simulation grid that are discarded (the default 160 x 0.25 = 40 time units,
  8 drag times 1 / (2 alpha), brings the energy to its statistically steady
  level), then stores num_steps + 1 states at model times 0, model_dt, ...,
  block-averaged to the output grid (`coarsen`). Trajectories are simulated
  together under vmap; the result is float32 and deterministic for a key.
  """
  num_trajectories = _check_count("num_trajectories", num_trajectories, 1)
  num_steps = _check_count("num_steps", num_steps, 1)
  burn_in_steps = _check_count("burn_in_steps", burn_in_steps, 0)
  keys = jax.random.split(key, num_trajectories)
  m = config.output_resolution

  @jax.jit
  @jax.vmap
  def simulate(k):
    omega = kolmogorov_random_initial_condition(k, config)
    if burn_in_steps:
      advance = _model_step(config, omega.dtype)
      w_hat = jax.lax.fori_loop(0, burn_in_steps, lambda _, w: advance(w),
                                jnp.fft.rfft2(omega))
      omega = jnp.fft.irfft2(w_hat, s=omega.shape).astype(omega.dtype)
    return _rollout(omega, num_steps, config, lambda w: coarsen(w, m))

  states = np.asarray(simulate(keys), np.float32)
  if not np.isfinite(states).all():
    raise FloatingPointError("Kolmogorov simulation diverged (non-finite"
                             " values); reduce solver_dt")
  grid = config.output_grid
  return xr.Dataset(
      {"vorticity": (("trajectory", "time", "x", "y"), states,
                     {"long_name": "vorticity d_x v - d_y u",
                      "coarsening": "block_mean"})},
      coords={"trajectory": np.arange(num_trajectories),
              "time": np.arange(num_steps + 1) * float(config.model_dt),
              "x": grid, "y": grid},
      attrs={"system": SYSTEM_NAME, "reynolds": float(config.reynolds),
             "viscosity": config.viscosity,
             "forcing_wavenumber": int(config.forcing_wavenumber),
             "forcing": "F = sin(k_f y) e_x, f = curl F = -k_f cos(k_f y)",
             "drag": float(config.drag), "model_dt": float(config.model_dt),
             "solver_dt": float(config.solver_dt),
             "resolution": int(config.resolution),
             "output_resolution": int(m),
             "domain_length": DOMAIN_LENGTH,
             "burn_in_steps": int(burn_in_steps)})


def generate_kolmogorov_splits(out_dir, seed: int | jax.Array,
                               counts: tuple[int, int, int] = (16, 4, 4),
                               num_steps: int = 100,
                               config: KolmogorovConfig = KolmogorovConfig(),
                               burn_in_steps: int = 160,
                               format: str = "netcdf"  # noqa: A002
                               ) -> dict[str, Path]:
  """Simulates and writes out_dir/{train,validation,test}.nc (or .zarr).

  seed is an int or a PRNG key; split i uses jax.random.fold_in(key, i).
  """
  from gencast_control.data import trajectories  # local: keeps this module light

  if len(counts) != 3:
    raise ValueError(f"counts must be (train, validation, test), got {counts}")
  key = (jax.random.PRNGKey(seed) if isinstance(seed, (int, np.integer))
         else seed)
  datasets = {
      split: generate_kolmogorov_dataset(jax.random.fold_in(key, i), count,
                                         num_steps, config, burn_in_steps)
      for i, (split, count) in enumerate(zip(trajectories.SPLITS, counts))}
  return trajectories.write_splits(datasets, out_dir, format)
