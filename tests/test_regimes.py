"""Observation regimes: coverage, layout, timing and noise statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control.core.regimes import ObservationRegime, sample_observations

TRUTH = jnp.zeros((41, 200, 1))


def _obs(regime, seed=0, phase=0, truth=TRUTH):
  return sample_observations(regime, jax.random.PRNGKey(seed), truth, phase)


def test_fraction_of_points_is_observed_each_time():
  obs = _obs(ObservationRegime("r", fraction=0.1))
  per_time = np.asarray(obs.mask[1:, :, 0].sum(axis=1))
  np.testing.assert_array_equal(per_time, 20)
  assert float(obs.mask[0].sum()) == 0.0  # the initial state is not observed
  # Random layout redraws the points at every time.
  assert not np.array_equal(obs.mask[1], obs.mask[2])


def test_fixed_regular_network_is_evenly_spaced_and_constant():
  obs = _obs(ObservationRegime("s", fraction=0.1, layout="regular",
                               fixed=True))
  mask = np.asarray(obs.mask[1:, :, 0])
  assert (mask == mask[0]).all()
  idx = np.flatnonzero(mask[0])
  assert len(idx) == 20
  assert set(np.diff(idx)) == {10}


def test_every_k_and_phase():
  obs = _obs(ObservationRegime("g", fraction=0.2, every=4), phase=1)
  observed_times = np.flatnonzero(np.asarray(obs.mask.sum(axis=(1, 2))))
  np.testing.assert_array_equal(observed_times, np.arange(1, 41, 4))


def test_noise_has_the_regime_std():
  truth = jnp.ones((41, 200, 1)) * 3.0
  obs = _obs(ObservationRegime("n", fraction=1.0, noise_std=0.5), truth=truth)
  errors = np.asarray(obs.values - truth)[np.asarray(obs.mask) > 0]
  assert errors.std() == pytest.approx(0.5, rel=0.03)
  assert abs(errors.mean()) < 0.02
  assert float(obs.noise_std) == 0.5


def test_explicit_points_and_traced_choice_between_regimes():
  regimes = [ObservationRegime("a", points=(0, 5, 7)),
             ObservationRegime("b", fraction=0.5)]
  run = jax.jit(lambda c: sample_observations(
      regimes, jax.random.PRNGKey(0), TRUTH, 0, c).mask)
  a, b = np.asarray(run(0)), np.asarray(run(1))
  np.testing.assert_array_equal(np.flatnonzero(a[3, :, 0]), [0, 5, 7])
  assert b[3].sum() == 100


def test_two_dimensional_grids_and_channels():
  truth = jnp.zeros((5, 8, 8, 2))
  obs = _obs(ObservationRegime("r", fraction=0.25), truth=truth)
  mask = np.asarray(obs.mask)
  assert mask[1].sum() == 16 * 2
  np.testing.assert_array_equal(mask[..., 0], mask[..., 1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(fraction=0.0), "fraction"),
    (dict(layout="spiral"), "layout"),
    (dict(every=0), "every"),
    (dict(noise_std=-1.0), "noise_std"),
    (dict(points=()), "empty point list"),
])
def test_invalid_regimes_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    ObservationRegime("bad", **kwargs)


def test_points_outside_grid_raise():
  with pytest.raises(ValueError, match="point indices"):
    _obs(ObservationRegime("p", points=(500,)))


def test_a_fixed_regular_network_is_the_same_in_every_draw():
  regime = ObservationRegime("stations", fraction=0.1, layout="regular",
                             fixed=True)
  truth = jnp.zeros((5, 128, 1))
  masks = [np.asarray(sample_observations(regime, jax.random.PRNGKey(k),
                                          truth).mask) for k in range(3)]
  np.testing.assert_array_equal(masks[0], masks[1])
  np.testing.assert_array_equal(masks[0], masks[2])
  assert masks[0][1, :, 0].sum() == 13 and masks[0][1, 0, 0] == 1


def test_points_and_fraction_together_are_an_error():
  with pytest.raises(ValueError, match="not both"):
    ObservationRegime("p", fraction=0.2, points=(1, 2))


def test_a_mixed_quality_network_gives_each_station_its_own_std():
  truth = jnp.ones((41, 200, 1))
  regime = ObservationRegime("m", fraction=0.5, layout="regular", fixed=True,
                             noise_std=0.05, noise_std_max=1.0)
  obs = _obs(regime, truth=truth)
  mask = np.asarray(obs.mask) > 0
  std = np.asarray(obs.noise_std)
  assert std.shape == truth.shape
  station_std = std[1:, :, 0][:, mask[1, :, 0]]
  assert (station_std == station_std[0]).all()  # a station keeps its quality
  assert 0.05 <= station_std.min() and station_std.max() <= 1.0
  assert station_std.max() / station_std.min() > 5  # really mixed
  # Each error is N(0, sigma_station^2).
  z = (np.asarray(obs.values - truth) / std)[mask]
  assert z.std() == pytest.approx(1.0, rel=0.05)
  # Regimes without a spread keep one scalar std, as before.
  assert np.ndim(_obs(ObservationRegime("n", noise_std=0.3)).noise_std) == 0
  with pytest.raises(ValueError, match="noise_std_max"):
    ObservationRegime("bad", noise_std=0.5, noise_std_max=0.1)


SPHERE = jnp.zeros((6, 32, 64, 2))  # [T+1, lat, lon, C], WB2's 64 x 32 grid
LATITUDE = -90 + (np.arange(32) + 0.5) * 180 / 32


def test_area_layout_is_uniform_in_area_on_the_sphere():
  """Over many networks, the share of stations poleward of 60 deg matches
  that cap's share of the sphere's area (1 - sin 60 = 13.4 %), while
  uniform grid points put 33 % there."""
  regime = ObservationRegime("a", fraction=0.05, layout="area", fixed=True)
  polar = np.abs(LATITUDE) > 60
  shares, grid_shares = [], []
  for seed in range(40):
    mask = np.asarray(_obs(regime, seed, truth=SPHERE).mask[1, ..., 0])
    assert mask.sum() == round(0.05 * 32 * 64)
    shares.append(mask[polar].sum() / mask.sum())
    grid = np.asarray(_obs(ObservationRegime("g", fraction=0.05, fixed=True),
                           seed, truth=SPHERE).mask[1, ..., 0])
    grid_shares.append(grid[polar].sum() / grid.sum())
  cell_area = np.cos(np.deg2rad(LATITUDE))
  expected = cell_area[polar].sum() / cell_area.sum()
  np.testing.assert_allclose(np.mean(shares), expected, atol=0.02)
  assert np.mean(grid_shares) > 0.3


def test_swath_is_two_moving_meridional_bands():
  obs = _obs(ObservationRegime("s", fraction=0.2, layout="swath"),
             truth=SPHERE)
  mask = np.asarray(obs.mask[..., 0]) > 0
  assert not mask[0].any()
  for t in range(1, 6):
    columns = mask[t].all(axis=0)  # every latitude of a band is observed
    np.testing.assert_array_equal(mask[t].any(axis=0), columns)
    assert abs(columns.mean() - 0.2) <= 2 / 64
    lon = np.flatnonzero(columns)
    # The two bands are 180 deg (32 columns) apart.
    assert set((lon + 32) % 64) == set(lon)
  first, second = mask[1].any(axis=0), mask[2].any(axis=0)
  assert not (first & second).any()  # the next pass observes elsewhere
  with pytest.raises(ValueError, match="swath moves"):
    ObservationRegime("s", layout="swath", fixed=True)


def test_per_channel_noise_and_physical_units():
  regime = ObservationRegime("p", fraction=1.0, noise_std=(2.0, 100.0),
                             noise_units="physical")
  with pytest.raises(ValueError, match="physical units"):
    _obs(regime, truth=SPHERE)
  with pytest.raises(ValueError, match="2 physical noise"):
    regime.in_state_units([1.0, 2.0, 3.0])
  state = regime.in_state_units([4.0, 50.0])
  assert state.noise_std == (0.5, 2.0) and state.noise_units == "state"
  obs = _obs(state, truth=SPHERE)
  np.testing.assert_array_equal(np.asarray(obs.noise_std), [0.5, 2.0])
  noise = np.asarray(obs.values[1:]).reshape(-1, 2)
  np.testing.assert_allclose(noise.std(axis=0), [0.5, 2.0], rtol=0.03)
  with pytest.raises(ValueError, match="one value per channel"):
    ObservationRegime("p", noise_std=2.0, noise_units="physical")
  with pytest.raises(ValueError, match="3 noise std"):
    _obs(ObservationRegime("q", noise_std=(1.0, 1.0, 1.0)), truth=SPHERE)

