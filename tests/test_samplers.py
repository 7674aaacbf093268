"""Samplers: schedule, accuracy on a Gaussian, exact u = 0, remat."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.core.samplers import (SamplerConfig, churn_factors,
                                           noise_levels, sample)
from tests.conftest import FAST_COMPILE_FLAG

MU, STD = 0.7, 0.5


def gaussian_denoiser(z, sigma):
  """Exact D(z, sigma) = E[x | x + sigma eps = z] for x ~ N(MU, STD^2)."""
  return (STD**2 * z + sigma**2 * MU) / (STD**2 + sigma**2)


def test_noise_levels_follow_karras_schedule():
  cfg = SamplerConfig(num_steps=5, sigma_max=80.0, sigma_min=0.002, rho=7.0)
  sigmas = noise_levels(cfg)
  assert sigmas.shape == (6,)
  assert sigmas[0] == pytest.approx(80.0) and sigmas[-2] == pytest.approx(
      0.002) and sigmas[-1] == 0.0
  assert np.all(np.diff(sigmas) < 0)
  i = 2
  expected = (80.0**(1 / 7) + i / 4 * (0.002**(1 / 7) - 80.0**(1 / 7)))**7
  assert sigmas[i] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", ["euler", "heun", "dpmpp_2s"])
def test_sampler_recovers_gaussian(method):
  # sigma_max >> STD so that starting from N(0, sigma_max^2) instead of
  # N(MU, STD^2 + sigma_max^2) biases the mean by only MU * STD / sigma_max.
  cfg = SamplerConfig(method=method, num_steps=30, sigma_max=80.0,
                      sigma_min=0.01)
  z, energy = sample(gaussian_denoiser, jax.random.PRNGKey(0), (20000,), cfg)
  tol = 0.06 if method == "euler" else 0.02
  assert float(z.mean()) == pytest.approx(MU, abs=tol)
  assert float(z.std()) == pytest.approx(STD, rel=tol * 2)
  assert energy.shape == (30,) and float(jnp.sum(energy)) == 0.0


def test_stochastic_churn_recovers_gaussian():
  cfg = SamplerConfig(method="dpmpp_2s", num_steps=30, sigma_max=80.0,
                      churn=10.0)
  assert churn_factors(cfg).max() == pytest.approx(min(10 / 30, 2**0.5 - 1))
  z, _ = sample(gaussian_denoiser, jax.random.PRNGKey(1), (20000,), cfg)
  assert float(z.std()) == pytest.approx(STD, rel=0.05)


METHODS = ("euler", "heun", "dpmpp_2s")
CHURNS = (0.0, 5.0)


def zero_control_differences() -> dict[str, float]:
  """max |plain - zero-controlled| sample per `method/churn`."""
  differences = {}
  for method in METHODS:
    for churn in CHURNS:
      cfg = SamplerConfig(method=method, num_steps=6, churn=churn)
      key = jax.random.PRNGKey(3)
      denoise = lambda z, s: jnp.tanh(gaussian_denoiser(z, s))  # nonlinear
      plain = jax.jit(lambda k: sample(denoise, k, (64,), cfg)[0])(key)
      zero = jax.jit(lambda k: sample(
          denoise, k, (64,), cfg,
          control=lambda z, s, d, i: jnp.zeros_like(z))[0])(key)
      differences[f"{method}/{churn}"] = float(np.max(np.abs(
          np.asarray(plain) - np.asarray(zero))))
  return differences


@pytest.fixture(scope="module")
def default_xla_differences():
  """The check at XLA's default optimisation, in a subprocess: the suite
  compiles at -O0 (conftest.py), where XLA:CPU computed the dpmpp_2s sample
  of two programs that differ by an added zero 1 ulp apart (measured), a
  code-generation artefact of the fast test setting, not what users run."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", GENCAST_CONTROL_TEST_XLA_OPT="1")
  flags = [f for f in env.pop("XLA_FLAGS", "").split()
           if f != FAST_COMPILE_FLAG]
  if flags:  # an empty XLA_FLAGS is read as a file name by older jaxlibs
    env["XLA_FLAGS"] = " ".join(flags)
  proc = subprocess.run(
      [sys.executable, "-m", "tests.test_samplers"], env=env,
      cwd=Path(__file__).parents[1], capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("churn", CHURNS)
def test_zero_control_is_bit_for_bit(method, churn, default_xla_differences):
  assert default_xla_differences[f"{method}/{churn}"] == 0.0


if __name__ == "__main__":
  print(json.dumps(zero_control_differences()))


def test_control_shifts_sample_by_scaled_sum():
  # With D = MU independent of z, the last sub-step jumps to z = D whatever
  # came before, so only its control survives: z = MU + (sigma_min - 0) u.
  cfg = SamplerConfig(method="euler", num_steps=5, sigma_max=2.0)
  const = lambda z, s: jnp.full_like(z, MU)
  key = jax.random.PRNGKey(0)
  base, _ = sample(const, key, (3,), cfg)
  shifted, energy = sample(const, key, (3,), cfg,
                           control=lambda z, s, d, i: jnp.full_like(z, 0.1))
  np.testing.assert_allclose(shifted - base, 0.1 * cfg.sigma_min, rtol=1e-4)
  # e_s = mean(d_s^2) / (2 sigma_hat_s^2) with d_s = (sigma_s - sigma_{s+1}) u.
  sigmas = noise_levels(cfg)
  expected = 0.5 * ((sigmas[:-1] - sigmas[1:]) * 0.1 / sigmas[:-1])**2
  np.testing.assert_allclose(np.asarray(energy), expected, rtol=1e-5)


def test_remat_gives_same_gradient():
  cfg = SamplerConfig(method="heun", num_steps=5)
  key = jax.random.PRNGKey(0)

  def loss(c, remat):
    control = lambda z, s, d, i: c * jnp.sin(z)
    z, energy = sample(gaussian_denoiser, key, (8,), cfg, control, remat)
    return jnp.sum(z**2) + jnp.sum(energy)

  g1 = jax.grad(loss)(0.3, False)
  g2 = jax.grad(loss)(0.3, True)
  assert np.isfinite(g1)
  assert float(g1) == pytest.approx(float(g2), rel=1e-5)


def test_invalid_configs_raise():
  with pytest.raises(ValueError, match="unknown sampler method"):
    SamplerConfig(method="ddim")
  with pytest.raises(ValueError, match="num_steps"):
    SamplerConfig(num_steps=0)
  with pytest.raises(ValueError, match="sigma_min"):
    SamplerConfig(sigma_min=5.0, sigma_max=1.0)
