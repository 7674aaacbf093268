"""Diffusion DA baselines behind one interface with the controller.

`assimilate_baseline(method, ardm, history, observations, num_steps, key,
ensemble_size, **options)` returns an ensemble [M, T+1, *spatial, C] like
`assimilation.ensemble_rollout`. The diffusion baselines are guidance rules
(`BASELINES`, one table of methods) that any FrozenARDM runs through its
step's `guidance` hook (`core.ardm.GuidanceInputs`): the SAME frozen ARDM and
sampler with the same sub-steps and PRNG keys (member m: fold_in(key, m);
step n: fold_in(key_m, n)), acting through the sampler's control hook

    z_{s+1} = step(z_hat, D(z_hat, sigma_hat)) + (sigma_hat - sigma_{s+1}) u_s,

so they differ from the controller only in how u_s is computed. Forecast step
n -> n+1 is guided by the observation y_{n+1} (mask M, std sigma_o) through
the denoised state x_hat(z) (the grid ARDM's x_n + r D(z, sigma), r the
residual std: GuidanceInputs.estimate and .scale):

* "dps"     (Chung et al. 2023, ICLR, arXiv 2209.14687): u = -zeta grad_z L,
            L(z) = ||M (x_hat(z) - y)||^2 / sigma_o^2 at z = z_hat.
* "sda"     (Rozet & Louppe 2023, arXiv 2306.10574; autoregressive use as in
            Shysheya et al. 2024): u = sigma_hat grad_z log p(y | z) with the
            Gaussian approximation log p(y|z) ~ -||M (x_hat - y)||^2 /
            (2 (sigma_o^2 + gamma (r sigma_hat)^2)).
* "repaint" (Lugmayr et al. 2022, CVPR; as DiffDA, Huang et al. 2024):
            observed entries of z_{s+1} are replaced by z(y) + sigma_{s+1}
            eps, z(y) = (y - x_n)/r (GuidanceInputs.to_variable).
* "unguided" the plain ARDM forecast.

The classical methods with the true solver (EnKF, LETKF, LETKS) are not
guidance rules: they have a contract of their own, `baselines.filters`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from typing import Callable

from gencast_control.core.ardm import FrozenARDM, GuidanceFn, GuidanceInputs
from gencast_control.core.assimilation import (ensemble_program, member_histories,
                                               member_keys)
from gencast_control.core.config import options_from_kwargs
from gencast_control.core.observations import Observations


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


# ------------------------------------------------------------------ rules


def _step_variance(noise_var, mask):
  """DPS's step size takes one sigma_obs^2: with per-entry stds the smallest
  observed one, so no entry's step exceeds the homoscedastic full step and
  poorer observations move the state proportionally less."""
  if jnp.ndim(noise_var) != jnp.ndim(mask):
    return noise_var
  return jnp.where(jnp.any(mask > 0), jnp.min(
      jnp.where(mask > 0, noise_var, jnp.inf)), 1.0)


def _misfit_grad(g: GuidanceInputs, y, mask, weight):
  """grad_z sum(weight M (x_hat(z) - y)^2) at z_hat, through the denoiser."""
  return jax.grad(lambda z: jnp.sum(weight * mask * (g.estimate(z) - y)**2))(
      g.state)


def dps_rule(options: DPSOptions, y, mask, noise_std, key) -> GuidanceFn:
  """DPS: u = -zeta grad_z ||M (x_hat(z) - y)||^2 / sigma_o^2."""
  del key
  noise_var = noise_std**2

  def rule(g: GuidanceInputs):
    zeta = options.zeta
    if zeta is None:
      zeta = options.relaxation * _step_variance(noise_var, mask) / (
          2 * g.scale**2 * (g.sigma - g.sigma_next))
    return -zeta * _misfit_grad(g, y, mask, 1.0 / noise_var)
  return rule


def sda_rule(options: SDAOptions, y, mask, noise_std, key) -> GuidanceFn:
  """SDA: u = sigma_hat grad_z log p(y | z), Gaussian in x_hat(z)."""
  del key

  def rule(g: GuidanceInputs):
    variance = noise_std**2 + options.gamma * (g.scale * g.sigma)**2
    score = -_misfit_grad(g, y, mask, 0.5 / variance)
    return g.sigma * score
  return rule


def repaint_rule(options: RepaintOptions, y, mask, noise_std, key
                 ) -> GuidanceFn:
  """RePaint: u = M (z_obs - z_new) / (sigma_hat - sigma_next), so that the
  observed entries of z_next are z_obs = z(y) + sigma_next eps."""
  del options, noise_std

  def rule(g: GuidanceInputs):
    z_new = g.move(g.state, g.denoised)
    eps = jax.random.normal(jax.random.fold_in(key, g.substep),
                            g.state.shape)
    z_obs = g.to_variable(y) + g.sigma_next * eps
    return mask * (z_obs - z_new) / (g.sigma - g.sigma_next)
  return rule


def _guided_rollout(rule_factory, ardm: FrozenARDM, history, observations,
                    num_steps, key, options, context=None):
  """One member's trajectory [T+1, *spatial, C] (traceable): step n -> n+1
  guided by the observations of time n+1."""
  h = ardm.history_length

  def forecast_step(history, n):
    step_key = jax.random.fold_in(key, n)
    noise_std = (observations.noise_std[n + 1]
                 if observations.heteroscedastic else observations.noise_std)
    rule = rule_factory(options, observations.values[n + 1],
                        observations.mask[n + 1], noise_std,
                        jax.random.fold_in(step_key, 0x0B5))
    step_context = None if context is None else jax.tree.map(
        lambda c: jax.lax.dynamic_slice_in_dim(c, n, h + 1), context)
    x_next, _ = ardm.step(history, step_key, guidance=rule,
                          context=step_context)
    history = jnp.concatenate([history[1:], x_next[None]], axis=0)
    return history, x_next

  _, states = jax.lax.scan(forecast_step, history, jnp.arange(num_steps))
  return jnp.concatenate([history[-1:], states], axis=0)


# ---------------------------------------------------------------- methods


@dataclasses.dataclass(frozen=True)
class Method:
  """A baseline: its options class (None: takes none) and its guidance
  rule factory (options, y, mask, noise_std, key) -> GuidanceFn, run by the
  frozen ARDM's sampler (None: the unguided forecast)."""
  options: type | None
  rule: Callable[..., GuidanceFn] | None = None


BASELINES = {
    "unguided": Method(None),
    "dps": Method(DPSOptions, dps_rule),
    "sda": Method(SDAOptions, sda_rule),
    "repaint": Method(RepaintOptions, repaint_rule),
}
METHODS = tuple(BASELINES)


def _parse_options(method: str, options: dict):
  if method not in BASELINES:
    raise ValueError(f"unknown baseline method {method!r}; choose one of"
                     f" {METHODS}")
  cls = BASELINES[method].options
  if cls is None:
    if options:
      raise ValueError(f"method {method!r} takes no options, got"
                       f" {sorted(options)}")
    return None
  return options_from_kwargs(cls, options, f"method {method!r}")


def _static_options(options):
  """The options with their numbers zeroed: what shapes the program (the
  numbers travel as traced arguments, `_numeric`)."""
  if isinstance(options, DPSOptions):  # zeta None vs float changes the program
    return DPSOptions(zeta=None if options.zeta is None else 0.0)
  return type(options)()


def _numeric(options) -> dict:
  """Numeric options travel as traced arguments (no recompilation)."""
  return {f.name: getattr(options, f.name)
          for f in dataclasses.fields(options)}


@functools.lru_cache(maxsize=32)
def _compiled(method, ardm, num_steps, static_options):
  """One jitted ensemble program per (method, model, length, static options)."""
  rule = BASELINES[method].rule

  @jax.jit
  def run(histories, observations, keys, numeric, context=None):
    options = dataclasses.replace(static_options, **numeric)
    member = lambda h, k: _guided_rollout(rule, ardm, h, observations,
                                          num_steps, k, options, context)
    return jax.vmap(member)(histories, keys)

  return run


def baseline_program(method: str, ardm: FrozenARDM, history,
                     observations: Observations, num_steps: int,
                     key: jax.Array, ensemble_size: int, context=None,
                     **method_options):
  """(jitted program, its arguments) of `assimilate_baseline` after input
  checks: program(*arguments) is the ensemble. For ahead-of-time inspection,
  e.g. program.lower(*arguments).compile().memory_analysis()."""
  options = _parse_options(method, method_options)
  spec = BASELINES[method]
  history = jnp.asarray(history, jnp.float32)
  if ensemble_size < 1:
    raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if not isinstance(observations, Observations):
    raise ValueError("observations must be an Observations stream, got"
                     f" {type(observations).__name__}")
  if not isinstance(ardm, FrozenARDM):
    raise ValueError(f"method {method!r} needs a FrozenARDM, got"
                     f" {type(ardm).__name__}")
  if spec.options is None:  # the unguided forecast checks its inputs itself
    return ensemble_program(ardm, history, num_steps, key, ensemble_size,
                            context=context)
  ardm.check_history(history)
  expected = (ardm.history_length,) + tuple(ardm.state_shape)
  observations.check_compatible(ardm.state_shape, num_steps)
  static = _static_options(options)
  histories = member_histories(history, ensemble_size, expected)
  run = _compiled(method, ardm, num_steps, static)
  arguments = (histories, observations, member_keys(key, ensemble_size),
               _numeric(options))
  return run, arguments + ((context,) if context is not None else ())


def assimilate_baseline(method: str, ardm: FrozenARDM, history,
                        observations: Observations, num_steps: int,
                        key: jax.Array, ensemble_size: int, context=None,
                        **method_options) -> jax.Array:
  """Ensemble [M, T+1, *spatial, C] of a DA baseline; jit-compiled per signature.

  Args:
    method: one of METHODS.
    ardm: the frozen ARDM: any FrozenARDM whose step runs guidance rules.
    history: [h, *spatial, C] states at times -h+1..0 (h = ardm.history_length)
      shared by the members, or one per member [M, h, *spatial, C].
    observations: the stream over times 0..T.
    num_steps: T.
    key: PRNG key; member m uses fold_in(key, m) as in `ensemble_rollout`.
    ensemble_size: M.
    context: the trajectory's per-step context, leaves [h + T, ...] (a
      model with forcings, e.g. GenCast; guidance rules only).
    **method_options: the fields of DPSOptions / SDAOptions / RepaintOptions.
  """
  run, arguments = baseline_program(method, ardm, history, observations,
                                    num_steps, key, ensemble_size, context,
                                    **method_options)
  return run(*arguments)
