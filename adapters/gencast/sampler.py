"""GenCast's DPM-Solver++ 2S sampler with an additive control in every sub-step.

The maths and noise handling are those of GenCast's sampler (Price et al. 2024,
arXiv 2312.15796; DPM-Solver++ 2S of Lu et al. 2022, arXiv 2211.01095, with the
stochastic churn of Karras et al. 2022, arXiv 2206.00364, Alg. 2). With
sigma_0 > ... > sigma_{N-1} = sigma_min > sigma_N = 0 and the state x the
normalised 12 h residual, sub-step i = 0..N-1 is

    x       <- x + sigma_0 eps_0                                      (i = 0)
    x_hat    = x + S_noise sqrt(sigma_hat^2 - sigma_i^2) eps_i,   sigma_hat = sigma_i (1 + gamma_i)
    d        = D(x_hat, sigma_hat),      sigma_mid = sqrt(sigma_hat sigma_{i+1})
    x_mid    = (sigma_mid/sigma_hat) x_hat + (1 - sigma_mid/sigma_hat) d
    x_{i+1}  = (sigma_{i+1}/sigma_hat) x_hat + (1 - sigma_{i+1}/sigma_hat) D(x_mid, sigma_mid)
               + (sigma_hat - sigma_{i+1}) u_i,                      (i < N-1)
    x_N      = d + sigma_hat u_{N-1}                                  (i = N-1)

with eps spherical white noise and u_i = u_psi(x_hat, d, sigma_hat, ...) the
control (Srivastava et al. 2025, arXiv 2510.06637). The random draws use the
same haiku RNG sequence as DeepMind's sampler (one `hk.next_rng_key()` per
variable for the initial noise and for the churn noise, in every sub-step, in
the same order inside `hk.fori_loop`), so with u = 0 the output equals
upstream's bit for bit for the same key. The last sub-step returns the Euler
jump x_N = d, as upstream does by a select after also computing the 2S branch;
unlike upstream, that discarded branch is evaluated at sigma_hat instead of at
sigma = 0, where GenCast's log-noise embedding is -inf and gradients through
the select become NaN (0 * NaN). `skip_final_call=True` skips the discarded
branch with an `hk.cond` (one denoiser call fewer), at the price of ~1 ulp
differences from upstream (XLA compiles the branch as a separate computation
whose fusion rounds differently).
"""

from __future__ import annotations

from typing import Callable, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gencast_control.adapters.gencast.upstream import upstream

# control(x_hat, denoised, sigma_hat, substep) -> u, a Dataset shaped like x.
ControlFn = Callable[[xr.Dataset, xr.Dataset, jax.Array, jax.Array], xr.Dataset]
# guide(x_hat, denoised, sigma_hat, sigma_next, substep, denoise, move) -> u,
# a Dataset shaped like x: a guidance rule's control, given the denoiser at
# sigma_hat, denoise(x) -> D(x, sigma_hat), and the uncontrolled sub-step
# move(x_hat, denoised) -> x at sigma_next (ardm.py builds the rule's
# GuidanceInputs from them).
GuideFn = Callable[..., xr.Dataset]


def mean_square(dataset: xr.Dataset) -> jax.Array:
  """Mean of u^2 over every element of every variable."""
  gc = upstream()
  arrays = [gc.xarray_jax.unwrap_data(v) for v in dataset.data_vars.values()]
  total = sum(jnp.sum(jnp.square(a)) for a in arrays)
  return total / sum(a.size for a in arrays)


class ControlledSampler:
  """DPM-Solver++ 2S + churn as in GenCast, plus `(sigma_hat - sigma_next) u`."""

  def __init__(self, denoiser, sampler_config, remat: bool = False,
               skip_final_call: bool = False):
    """Args:
      denoiser: GenCast's preconditioned denoiser D(inputs, noisy_targets,
        noise_levels, forcings).
      sampler_config: gencast.SamplerConfig.
      remat: rematerialise the denoiser calls of each sub-step (hk.remat) in
        the backward pass.
      skip_final_call: take the last sub-step's Euler jump in an hk.cond, so
        the discarded 2S branch is not computed (2N - 1 denoiser calls instead
        of 2N). XLA then compiles that branch as a separate computation whose
        fusion rounds differently: results differ from upstream by ~1 ulp.
        Default False: the same computation graph as upstream, bit-identical.
    """
    utils = upstream().samplers_utils
    cfg = sampler_config
    self._denoiser = denoiser
    self._noise_levels = utils.noise_schedule(
        cfg.max_noise_level, cfg.min_noise_level, cfg.num_noise_levels, cfg.rho)
    self._stochastic_churn = cfg.stochastic_churn_rate > 0
    self._churn_rates = utils.stochastic_churn_rate_schedule(
        self._noise_levels, cfg.stochastic_churn_rate,
        cfg.churn_min_noise_level, cfg.churn_max_noise_level)
    self._inflation = cfg.noise_level_inflation_factor
    self._remat = remat
    self._skip_final_call = skip_final_call

  @property
  def noise_levels(self) -> np.ndarray:
    """sigma_0 > ... > sigma_{N-1} > sigma_N = 0."""
    return self._noise_levels

  @property
  def denoiser_calls(self) -> int:
    """Denoiser evaluations per sample: 2 per sub-step (1 in the last if skipped)."""
    return 2 * (len(self._noise_levels) - 1) - int(self._skip_final_call)

  def __call__(self, inputs: xr.Dataset, targets_template: xr.Dataset,
               forcings: Optional[xr.Dataset] = None,
               control: Optional[ControlFn] = None,
               guide: Optional[GuideFn] = None,
               ) -> tuple[xr.Dataset, jax.Array]:
    """Draws one sample (inside hk.transform).

    Args:
      inputs, targets_template, forcings: GenCast's (normalised) call contract.
      control: the controller's u, added as (sigma_hat - sigma_next) u.
      guide: a guidance rule's control (GuideFn), added like `control`
        (give one of the two).

    Returns:
      (x_N, control energy sum_i mean(d_i^2) / (2 sigma_hat_i^2) of the
      displacements d_i = (sigma_hat_i - sigma_{i+1}) u_i); 0 without control.
    """
    gc = upstream()
    utils = gc.samplers_utils
    dtype = gc.casting.infer_floating_dtype(targets_template)
    sigmas = jnp.array(self._noise_levels).astype(dtype)
    churn_rates = jnp.array(self._churn_rates).astype(dtype)
    num_substeps = len(self._noise_levels) - 1

    def denoise(noise_level, x):
      levels = gc.xarray_jax.DataArray(
          jnp.tile(noise_level, x.sizes["batch"]), dims=("batch",))
      return self._denoiser(inputs=inputs, noisy_targets=x,
                            noise_levels=levels, forcings=forcings)

    def churned(i, x):
      """Initial noise (i = 0) and churn: the sub-step's (x_hat, sigma_hat)."""
      is_first = jnp.asarray(i == 0).astype(sigmas.dtype)
      x = x + sigmas[0] * utils.spherical_white_noise_like(x) * is_first
      sigma = sigmas[i]
      if self._stochastic_churn:
        x, sigma = utils.apply_stochastic_churn(
            x, sigma, stochastic_churn_rate=churn_rates[i],
            noise_level_inflation_factor=self._inflation)
      return x, sigma

    def two_s(x_hat, denoised, sigma_hat, sigma_next):
      """DPM-Solver++ 2S from sigma_hat to sigma_next > 0 given d."""
      # Guard: on the last sub-step (sigma_next = 0) this branch is computed
      # and discarded; evaluate it at sigma_hat instead of sigma = 0.
      sigma_next = jnp.where(sigma_next > 0, sigma_next, sigma_hat)
      sigma_mid = jnp.sqrt(sigma_hat * sigma_next)
      mid_over_current = sigma_mid / sigma_hat
      x_mid = mid_over_current * x_hat + (1 - mid_over_current) * denoised
      next_over_current = sigma_next / sigma_hat
      return (next_over_current * x_hat
              + (1 - next_over_current) * denoise(sigma_mid, x_mid))

    def update(x_hat, sigma_hat, i, energy):
      """Moves x_hat to sigma_{i+1}, then adds (sigma_hat - sigma_{i+1}) u."""
      sigma_next = sigmas[i + 1]
      denoised = denoise(sigma_hat, x_hat)

      def move(x_hat, denoised):
        if self._skip_final_call:
          return hk.cond(sigma_next > 0, two_s, lambda x, d, s, n: d,
                         x_hat, denoised, sigma_hat, sigma_next)
        return utils.tree_where(
            sigma_next == 0, denoised,
            two_s(x_hat, denoised, sigma_hat, sigma_next))

      x_next = move(x_hat, denoised)
      if control is None and guide is None:
        return x_next, energy
      if guide is not None:
        u = guide(x_hat, denoised, sigma_hat, sigma_next, i,
                  lambda x: denoise(sigma_hat, x), move)
      else:
        u = control(x_hat, denoised, sigma_hat, i)
      # Displacement d = (sigma_hat - sigma_next) u; its cost is
      # mean(d^2) / (2 sigma_hat^2), as in gencast_control.core.samplers.
      relative = (sigma_hat - sigma_next) / sigma_hat
      return (x_next + (sigma_hat - sigma_next) * u,
              energy + 0.5 * relative**2 * mean_square(u))

    if self._remat:
      update = hk.remat(update)

    def body(i, carry):
      x, energy = carry
      x_hat, sigma_hat = churned(i, x)
      return update(x_hat, sigma_hat, i, energy)

    x = xr.zeros_like(targets_template)
    energy = jnp.zeros((), dtype)
    return hk.fori_loop(0, num_substeps, body, (x, energy))
