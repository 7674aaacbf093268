"""Observation streams, preview buffer and misfit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.core.observations import Observations


def _stream(num_times=6, n=5):
  values = np.arange(num_times * n, dtype=np.float32).reshape(num_times, n, 1)
  return values


def test_nan_values_are_masked_out():
  values = _stream()
  values[2, 3, 0] = np.nan
  obs = Observations.from_arrays(values, noise_std=0.5)
  assert float(obs.mask[2, 3, 0]) == 0.0
  assert float(obs.values[2, 3, 0]) == 0.0
  assert float(obs.mask.sum()) == values.size - 1


def test_explicit_mask_zeroes_unobserved_values():
  values = _stream()
  mask = np.zeros_like(values)
  mask[1, 0] = 1
  obs = Observations.from_arrays(values, mask)
  assert float(obs.values.sum()) == values[1, 0, 0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(values=np.full((3, 4, 1), np.inf)), "infinite"),
    (dict(values=np.zeros((3, 4))), "shape \\[time, \\*spatial, channel\\]"),
    (dict(values=np.zeros((3, 4, 1)), mask=np.ones((3, 4, 2))),
     "mask shape"),
    (dict(values=np.zeros((3, 4, 1)), mask=np.full((3, 4, 1), 2)),
     "only 0 and 1"),
    (dict(values=np.zeros((3, 4, 1)), noise_std=0.0), "positive"),
    (dict(values=np.zeros((3, 4, 1)), noise_std=[1.0, 2.0]), "per channel"),
])
def test_bad_observations_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    Observations.from_arrays(**kwargs)


def test_preview_holds_next_frames_and_pads_past_the_end():
  obs = Observations.from_arrays(_stream())
  preview = obs.preview(2, horizon=3)
  np.testing.assert_array_equal(preview.values, _stream()[3:6])
  np.testing.assert_array_equal(preview.offsets, [1, 2, 3])
  late = jax.jit(lambda n: obs.preview(n, 3))(4)  # traced step
  np.testing.assert_array_equal(late.values[0], _stream()[5])
  assert float(late.mask[1:].sum()) == 0.0


def test_misfit_matches_brute_force():
  rng = np.random.default_rng(0)
  values = rng.normal(size=(4, 6, 2)).astype(np.float32)
  mask = (rng.uniform(size=values.shape) < 0.4).astype(np.float32)
  obs = Observations.from_arrays(values, mask, noise_std=0.3)
  states = rng.normal(size=(3, 6, 2)).astype(np.float32)
  expected = (np.sum(mask[1:] * (states - values[1:])**2) / 0.3**2
              / mask[1:].sum())
  assert float(obs.misfit(jnp.asarray(states), slice(1, None))) == \
      pytest.approx(expected, rel=1e-5)


def test_check_compatible_names_the_problem():
  obs = Observations.from_arrays(_stream(num_times=4))
  with pytest.raises(ValueError, match="grid of shape"):
    obs.check_compatible((7, 1), 3)
  with pytest.raises(ValueError, match="cover 4 times"):
    obs.check_compatible((5, 1), 10)
  obs.check_compatible((5, 1), 3)


def test_per_entry_error_stds_reach_the_preview_and_the_misfit():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(5, 6, 2)).astype(np.float32)
  mask = rng.uniform(size=values.shape) < 0.5
  std = rng.uniform(0.1, 2.0, size=values.shape).astype(np.float32)
  # Unobserved entries may carry any std (NaN here); observed ones are used.
  obs = Observations.from_arrays(np.where(mask, values, np.nan),
                                 noise_std=np.where(mask, std, np.nan))
  assert obs.heteroscedastic
  preview = obs.preview(1, horizon=2)
  np.testing.assert_allclose(preview.error_std, (mask * std)[2:4])
  states = rng.normal(size=(4, 6, 2)).astype(np.float32)
  m = mask[1:]
  expected = np.sum(m * ((states - values[1:]) / std[1:])**2) / m.sum()
  assert float(obs.misfit(jnp.asarray(states), slice(1, None))) == \
      pytest.approx(expected, rel=1e-5)
  # A homoscedastic stream gives the same std to every observed entry.
  plain = Observations.from_arrays(values, mask.astype(np.float32), [0.2, 0.4])
  assert not plain.heteroscedastic
  np.testing.assert_allclose(plain.preview(0, 1).error_std[0],
                             mask[1] * np.array([0.2, 0.4], np.float32))


def test_a_bad_per_entry_error_std_is_an_error():
  values = np.zeros((3, 4, 1))
  std = np.full(values.shape, 0.1)
  std[1, 2, 0] = -1.0
  with pytest.raises(ValueError, match="positive and finite"):
    Observations.from_arrays(values, noise_std=std)
  with pytest.raises(ValueError, match="one per observation"):
    Observations.from_arrays(values, noise_std=np.ones((3, 4)))
