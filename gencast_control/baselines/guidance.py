"""Diffusion DA baselines behind one interface with the controller.

`assimilate_baseline(method, ardm, history, observations, num_steps, key,
ensemble_size, **options)` returns an ensemble [M, T+1, *spatial, C] like
`assimilation.ensemble_rollout`. The diffusion baselines use the SAME frozen
ARDM, the SAME sampler `samplers.sample` with the same sub-steps and PRNG keys
(member m: fold_in(key, m); step n: fold_in(key_m, n)), and act through the
sampler's control hook

    z_{s+1} = step(z_hat, D(z_hat, sigma_hat)) + (sigma_hat - sigma_{s+1}) u_s,

so they differ from the controller only in how u_s is computed. Forecast step
n -> n+1 is guided by the observation y_{n+1} (mask M, std sigma_o) through
the denoised state x_hat(z) = x_n + r D(z, sigma) (r: residual std):

* "dps"     (Chung et al. 2023, ICLR, arXiv 2209.14687): u = -zeta grad_z L,
            L(z) = ||M (x_hat(z) - y)||^2 / sigma_o^2 at z = z_hat.
* "sda"     (Rozet & Louppe 2023, arXiv 2306.10574; autoregressive use as in
            Shysheya et al. 2024): u = sigma_hat grad_z log p(y | z) with the
            Gaussian approximation log p(y|z) ~ -||M (x_hat - y)||^2 /
            (2 (sigma_o^2 + gamma (r sigma_hat)^2)).
* "repaint" (Lugmayr et al. 2022, CVPR; as DiffDA, Huang et al. 2024):
            observed entries of z_{s+1} are replaced by (y - x_n)/r +
            sigma_{s+1} eps.
* "enkf"    stochastic EnKF with the true solver, KS or Kolmogorov (see
            `enkf`).
* "unguided" the plain ARDM forecast.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from gencast_control.baselines import enkf
from gencast_control.adapters.grid import GridARDM
from gencast_control.core.assimilation import (ensemble_program, member_histories,
                                               member_keys)
from gencast_control.core.observations import Observations
from gencast_control.core.samplers import noise_levels, sample, solver_move

METHODS = ("unguided", "dps", "sda", "repaint", "enkf")


@dataclasses.dataclass(frozen=True)
class DPSOptions:
  """DPS step size.

  zeta: constant step size of u = -zeta grad_z L. None (default) uses the
    normalised step zeta_s = relaxation sigma_o^2 / (2 r^2 (sigma_hat -
    sigma_{s+1})): where D's Jacobian is ~I (small sigma) the guided sub-step
    then moves x_hat a fraction `relaxation` of the way to y (a relaxed
    Gauss-Newton step), at every noise level, without per-model tuning;
    at large sigma the Jacobian of D is small and so is the correction.
  relaxation: the fraction above (used only when zeta is None).
  """
  zeta: float | None = None
  relaxation: float = 0.5


@dataclasses.dataclass(frozen=True)
class SDAOptions:
  """gamma: weight of the denoiser's error variance (r sigma)^2 in the
  likelihood approximation of Rozet & Louppe 2023 (their Sec. 3.2)."""
  gamma: float = 1.0


@dataclasses.dataclass(frozen=True)
class RepaintOptions:
  """RePaint without resampling (jumps back would add sub-steps)."""


_OPTIONS = {"unguided": None, "dps": DPSOptions, "sda": SDAOptions,
            "repaint": RepaintOptions, "enkf": enkf.EnKFOptions}


def _parse_options(method: str, options: dict):
  if method not in METHODS:
    raise ValueError(f"unknown baseline method {method!r}; choose one of"
                     f" {METHODS}")
  cls = _OPTIONS[method]
  if cls is None:
    if options:
      raise ValueError(f"method 'unguided' takes no options, got"
                       f" {sorted(options)}")
    return None
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(options) - names)
  if unknown:
    raise ValueError(f"unknown options {unknown} for method {method!r};"
                     f" valid: {sorted(names)}")
  if method == "enkf" and not {"ks_config", "pde_config"} & set(options):
    raise ValueError("method 'enkf' needs the option ks_config=KSConfig(...)"
                     " or pde_config=KolmogorovConfig(...) (the true solver"
                     " used as the model)")
  return cls(**options)


def _control(method, ardm: GridARDM, options, denoise, last, y, mask,
             noise_std, key):
  """The sampler's u(z_hat, sigma_hat, denoised, s) for one forecast step."""
  config = ardm.config.sampler
  sigmas = jnp.asarray(noise_levels(config))
  r = ardm.normalization.residual_std
  noise_var = noise_std**2  # scalar, per channel or per entry
  # DPS's step size takes one sigma_obs^2: with per-entry stds the smallest
  # observed one, so no entry's step exceeds the homoscedastic full step
  # and poorer observations move the state proportionally less.
  step_var = noise_var
  if jnp.ndim(noise_var) == jnp.ndim(mask):
    step_var = jnp.where(jnp.any(mask > 0), jnp.min(
        jnp.where(mask > 0, noise_var, jnp.inf)), 1.0)

  def misfit_grad(z_hat, sigma_hat, weight):
    """grad_z sum(weight M (x_hat(z) - y)^2) through the frozen denoiser."""
    def misfit(z):
      x_hat = last + r * denoise(z, sigma_hat)
      return jnp.sum(weight * mask * (x_hat - y)**2)
    return jax.grad(misfit)(z_hat)

  if method == "dps":
    def control(z_hat, sigma_hat, denoised, s):
      del denoised
      sigma_next = sigmas[s + 1]
      if options.zeta is None:
        zeta = options.relaxation * step_var / (2 * r**2 *
                                                 (sigma_hat - sigma_next))
      else:
        zeta = options.zeta
      return -zeta * misfit_grad(z_hat, sigma_hat, 1.0 / noise_var)
    return control

  if method == "sda":
    def control(z_hat, sigma_hat, denoised, s):
      del denoised, s
      variance = noise_var + options.gamma * (r * sigma_hat)**2
      score = -misfit_grad(z_hat, sigma_hat, 0.5 / variance)
      return sigma_hat * score
    return control

  # RePaint: u = M (z_obs - z_new) / (sigma_hat - sigma_next), so that
  # z_new + (sigma_hat - sigma_next) u equals z_obs on observed entries.
  z_target = (y - last) / r

  def control(z_hat, sigma_hat, denoised, s):
    sigma_next = sigmas[s + 1]
    z_new = jax.lax.cond(
        sigma_next > 0,
        lambda: solver_move(config.method, denoise, z_hat, denoised,
                            sigma_hat, jnp.maximum(sigma_next, 1e-12)),
        lambda: denoised)
    eps = jax.random.normal(jax.random.fold_in(key, s), z_hat.shape)
    z_obs = z_target + sigma_next * eps
    return mask * (z_obs - z_new) / (sigma_hat - sigma_next)

  return control


def _guided_rollout(method, ardm: GridARDM, history, observations, num_steps,
                    key, options):
  """One member's trajectory [T+1, *spatial, C] (traceable)."""
  def forecast_step(history, n):
    conditioning = ardm.conditioning(history)
    last = history[-1]
    denoise = lambda z, sigma: ardm.denoise(z, sigma, conditioning)
    step_key = jax.random.fold_in(key, n)
    control = _control(method, ardm, options, denoise, last,
                       observations.values[n + 1], observations.mask[n + 1],
                       observations.noise_std[n + 1]
                       if observations.heteroscedastic
                       else observations.noise_std,
                       jax.random.fold_in(step_key, 0x0B5))
    z, _ = sample(denoise, step_key, ardm.state_shape, ardm.config.sampler,
                  control=control)
    x_next = ardm.to_state(z, last)
    history = jnp.concatenate([history[1:], x_next[None]], axis=0)
    return history, x_next

  _, states = jax.lax.scan(forecast_step, history, jnp.arange(num_steps))
  return jnp.concatenate([history[-1:], states], axis=0)


def _numeric(options) -> dict:
  """Numeric options travel as traced arguments (no recompilation)."""
  return {f.name: getattr(options, f.name)
          for f in dataclasses.fields(options)
          if f.name not in enkf.STATIC_FIELDS}


@functools.lru_cache(maxsize=32)
def _compiled(method, ardm, num_steps, static_options):
  """One jitted ensemble program per (method, model, length, solver config)."""

  @jax.jit
  def run(histories, observations, keys, numeric):
    if method == "enkf":
      return enkf.enkf_rollout(histories, observations, num_steps, keys,
                               static_options, **numeric)
    options = dataclasses.replace(static_options, **numeric)
    member = lambda h, k: _guided_rollout(method, ardm, h, observations,
                                          num_steps, k, options)
    return jax.vmap(member)(histories, keys)

  return run


def baseline_program(method: str, ardm: GridARDM | None, history,
                     observations: Observations, num_steps: int,
                     key: jax.Array, ensemble_size: int, **method_options):
  """(jitted program, its arguments) of `assimilate_baseline` after input
  checks: program(*arguments) is the ensemble. For ahead-of-time inspection,
  e.g. program.lower(*arguments).compile().memory_analysis()."""
  options = _parse_options(method, method_options)
  history = jnp.asarray(history, jnp.float32)
  if ensemble_size < 1:
    raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
  state_ndim = (len(enkf.solver_state_shape(options)) if method == "enkf"
                else len(ardm.state_shape) if ardm is not None else None)
  # An initial ensemble [M, h, ...]: check one member's history.
  single = history[0] if history.ndim == (state_ndim or 0) + 2 else history
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if not isinstance(observations, Observations):
    raise ValueError("observations must be an Observations stream, got"
                     f" {type(observations).__name__}")
  if not bool(jnp.all(jnp.isfinite(history))):
    raise ValueError("initial history contains NaN or inf")
  if method == "unguided":
    return ensemble_program(ardm, history, num_steps, key, ensemble_size)
  if method == "enkf":
    enkf.check_enkf_inputs(single, options, ensemble_size)
    observations.check_compatible(tuple(single.shape[1:]), num_steps)
    needed = enkf.observation_capacity(observations)
    if 0 < options.obs_capacity < needed:
      raise ValueError(f"obs_capacity={options.obs_capacity} is below the"
                       f" {needed} entries observed at one time")
    static = dataclasses.replace(
        options, localization_radius=1.0, inflation=1.0, initial_std=0.0,
        obs_capacity=options.obs_capacity or needed)
  else:
    if not isinstance(ardm, GridARDM):
      raise ValueError(f"method {method!r} needs a GridARDM, got"
                       f" {type(ardm).__name__}")
    observations.check_compatible(ardm.state_shape, num_steps)
    static = RepaintOptions() if method == "repaint" else type(options)()
    if method == "dps":  # zeta None vs float changes the program
      static = DPSOptions(zeta=None if options.zeta is None else 0.0)
  expected = (tuple(single.shape) if method == "enkf" else
              (ardm.history_length,) + tuple(ardm.state_shape))
  histories = member_histories(history, ensemble_size, expected)
  run = _compiled(method, ardm if method != "enkf" else None, num_steps,
                  static)
  return run, (histories, observations, member_keys(key, ensemble_size),
               _numeric(options))


def assimilate_baseline(method: str, ardm: GridARDM | None, history,
                        observations: Observations, num_steps: int,
                        key: jax.Array, ensemble_size: int,
                        **method_options) -> jax.Array:
  """Ensemble [M, T+1, *spatial, C] of a DA baseline; jit-compiled per signature.

  Args:
    method: one of METHODS.
    ardm: the frozen ARDM (ignored by "enkf", which uses the true solver).
    history: [h, *spatial, C] states at times -h+1..0 (h = ardm.history_length)
      shared by the members, or one per member [M, h, *spatial, C].
    observations: the stream over times 0..T.
    num_steps: T.
    key: PRNG key; member m uses fold_in(key, m) as in `ensemble_rollout`.
    ensemble_size: M.
    **method_options: the fields of DPSOptions / SDAOptions / RepaintOptions /
      enkf.EnKFOptions.
  """
  run, arguments = baseline_program(method, ardm, history, observations,
                                    num_steps, key, ensemble_size,
                                    **method_options)
  return run(*arguments)
