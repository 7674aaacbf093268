"""Observation synthesis: networks, swaths, schedules, noise; lat/lon + flat."""

import numpy as np
import pytest

from gencast_control.data import obs_synthesis as obs

LAT = np.linspace(-90.0, 90.0, 19)  # the 10 deg grid with poles
LON = np.arange(0.0, 360.0, 10.0)


# ----------------------------------------------------------- point masks --
@pytest.mark.parametrize("shape", [(128,), (32, 32), (19, 36)])
def test_random_fraction_observes_exact_fraction(shape):
  size = int(np.prod(shape))
  for fraction in (0.05, 0.25, 1.0):
    mask = obs.random_fraction_mask(shape, fraction, seed=1)
    assert mask.shape == shape
    assert mask.sum() == max(1, round(fraction * size))
  a = obs.random_fraction_mask(shape, 0.1, seed=1)
  np.testing.assert_array_equal(a, obs.random_fraction_mask(shape, 0.1, 1))
  assert not np.array_equal(a, obs.random_fraction_mask(shape, 0.1, 2))
  with pytest.raises(ValueError, match="fraction"):
    obs.random_fraction_mask(shape, 0.0, 1)


def test_random_points_are_uniform_over_the_grid():
  counts = sum(obs.random_points_mask((10,), 3, seed).astype(int)
               for seed in range(3000))
  np.testing.assert_allclose(counts / 3000, 0.3, atol=0.04)


def test_gridded_every_kth_point():
  mask = obs.gridded_mask((19, 36), every=(3, 4), offset=(1, 2))
  assert mask.sum() == len(range(1, 19, 3)) * len(range(2, 36, 4))
  assert mask[1, 2] and mask[4, 6] and not mask[0, 2]
  line = obs.gridded_mask((128,), every=4)
  assert line.mean() == 0.25 and line[0] and line[124]
  with pytest.raises(ValueError, match="2 entries"):
    obs.gridded_mask((19, 36), every=(3, 4, 5))


# --------------------------------------------------------------- stations --
def test_stations_snap_to_nearest_point_with_wraparound():
  net = obs.stations_from_latlon(
      LAT, LON, [(12.0, 359.0), (11.0, 1.0), (-88.0, 123.0), (44.0, 176.0)])
  np.testing.assert_array_equal(net.indices,
                                [[10, 0], [10, 0], [0, 0], [13, 18]])
  # The pole is one point whatever its longitude: it snaps to column 0.
  assert net.num_distinct == 3 and net.mask.sum() == 3
  assert net.mask[10, 0] and net.mask[13, 18]


def test_stations_on_descending_latitudes():
  desc = LAT[::-1]
  net = obs.stations_from_latlon(desc, LON, [(12.0, 359.0)])
  assert desc[net.indices[0, 0]] == 10.0 and LON[net.indices[0, 1]] == 0.0
  with pytest.raises(ValueError, match="within"):
    obs.stations_from_latlon(LAT, LON, [(95.0, 0.0)])
  with pytest.raises(ValueError, match="empty"):
    obs.stations_from_latlon(LAT, LON, [])


def test_random_stations_are_uniform_on_the_sphere():
  net = obs.random_stations(LAT, LON, 20000, seed=0)
  # Rows at +-90 hold the polar caps |lat| > 85: area fraction 1 - sin(85).
  counts = np.bincount(net.indices[:, 0], minlength=LAT.size)
  polar = (counts[0] + counts[-1]) / 20000
  assert polar == pytest.approx(1 - np.sin(np.deg2rad(85)), abs=0.002)
  # The equator row holds |lat| < 5: area fraction sin(5 deg).
  assert counts[9] / 20000 == pytest.approx(np.sin(np.deg2rad(5)), abs=0.01)
  # Every pole is one point: all stations of a polar cap merge into it.
  assert len(set(net.indices[net.indices[:, 0] == 0, 1])) == 1
  assert net.num_distinct == 17 * 36 + 2
  few = obs.random_stations(LAT, LON, 50, seed=3, area_weighted=False)
  assert few.num_distinct == 50 and few.indices.shape == (50, 2)


# ----------------------------------------------------------------- swaths --
@pytest.mark.parametrize("revisit", [3, 6, 12])
def test_zonal_swaths_cover_the_globe_once_per_revisit(revisit):
  width = 360.0 / revisit + 1.0
  masks = obs.satellite_swath_masks(LAT, LON, 2 * revisit, width, revisit)
  assert masks.shape == (2 * revisit, 19, 36)
  assert masks[:revisit].any(axis=0).all()
  np.testing.assert_array_equal(masks[:revisit], masks[revisit:])
  # Each swath covers ~ width / 360 of the longitudes, all latitudes.
  for m in masks:
    assert m.mean() == pytest.approx(width / 360, abs=1.5 / 36)
    assert (m == m[:1]).all()
  narrow = obs.satellite_swath_masks(LAT, LON, revisit, 360.0 / revisit / 2,
                                     revisit)
  assert not narrow.any(axis=0).all()


def test_meridional_swath_and_wraparound_band():
  masks = obs.satellite_swath_masks(LAT, LON, 4, 50.0, 4,
                                    direction="meridional")
  assert masks.any(axis=0).all()  # 4 bands of 50 > 180 / 4 deg tile the globe
  assert not obs.satellite_swath_masks(LAT, LON, 4, 30.0, 4,
                                       direction="meridional").any(0).all()
  assert masks[0, 0].all() and not masks[0, 5].any()
  band = obs.satellite_swath_masks(LAT, LON, 1, 40.0, 1, start_deg=355.0)
  observed_lons = sorted(LON[band[0, 0]])
  assert observed_lons == [0.0, 10.0, 340.0, 350.0]
  with pytest.raises(ValueError, match="direction"):
    obs.satellite_swath_masks(LAT, LON, 1, 10.0, 1, direction="diagonal")


@pytest.mark.parametrize("shape, axis", [((128,), 0), ((32, 48), 1),
                                         ((32, 48), 0)])
def test_generic_moving_bands(shape, axis):
  period = 8
  n = shape[axis]
  masks = obs.moving_band_masks(shape, period, axis, width=n / period + 1,
                                period=period)
  assert masks.shape == (period,) + shape
  assert masks.any(axis=0).all()
  fractions = masks.reshape(period, -1).mean(axis=1)
  np.testing.assert_allclose(fractions, (n / period + 1) / n, atol=1.5 / n)
  open_band = obs.moving_band_masks(shape, 1, axis, width=4, period=1,
                                    periodic=False)
  assert open_band.reshape(-1).sum() == 2 * np.prod(shape) / n


# ------------------------------------------------------------------ times --
def test_observation_times_schedule_and_dropout():
  times = obs.observation_times(12, every=3, phase=1)
  np.testing.assert_array_equal(np.flatnonzero(times), [1, 4, 7, 10])
  assert not obs.observation_times(5)[0]
  assert obs.observation_times(5, include_initial=True).all()
  long = obs.observation_times(20000, dropout=0.3, seed=4)
  assert long[1:].mean() == pytest.approx(0.7, abs=0.015)
  np.testing.assert_array_equal(long,
                                obs.observation_times(20000, dropout=0.3,
                                                      seed=4))
  with pytest.raises(ValueError, match="dropout"):
    obs.observation_times(5, dropout=1.0)


# -------------------------------------------------------------- synthesis --
def test_noise_std_per_channel_and_observed_fraction():
  truth = np.zeros((5, 64, 64, 2), np.float32)
  truth[..., 1] = 10.0
  spatial = obs.random_fraction_mask((64, 64), 0.5, seed=0)
  values, mask = obs.synthesize(truth, spatial, noise_std=[0.1, 2.0], seed=3)
  assert values.shape == mask.shape == truth.shape
  assert values.dtype == mask.dtype == np.float32
  assert not mask[0].any()  # t = 0 is not observed by default
  np.testing.assert_allclose(mask[1:].mean(), 0.5, atol=1e-3)
  assert np.all(values[mask == 0] == 0)
  for c, (mean, std) in enumerate([(0.0, 0.1), (10.0, 2.0)]):
    observed = values[..., c][mask[..., c] > 0]
    assert observed.mean() == pytest.approx(mean, abs=4 * std / 90)
    assert observed.std() == pytest.approx(std, rel=0.03)


def test_noise_std_lookup_by_variable():
  channels = ["2m_temperature", "temperature@850", "temperature@500"]
  sigma = obs.noise_std_per_channel(
      channels, {"2m_temperature": 1.0, "temperature": 0.5,
                 "temperature@500": 0.7})
  np.testing.assert_allclose(sigma, [1.0, 0.5, 0.7])
  with pytest.raises(ValueError, match="no noise std for channel"):
    obs.noise_std_per_channel(channels, {"temperature": 0.5})
  np.testing.assert_allclose(
      obs.noise_std_per_channel(channels, {}, default=0.2), 0.2)


def test_synthesis_is_nan_safe_and_respects_time_and_channel_masks():
  truth = np.random.default_rng(0).normal(size=(6, 19, 36, 3)).astype(
      np.float32)
  truth[2, 3, 4, 1] = np.nan
  swaths = obs.satellite_swath_masks(LAT, LON, 6, 90.0, 4)
  times = obs.observation_times(6, every=2)
  values, mask = obs.synthesize(truth, swaths, times, noise_std=0.0,
                                channel_mask=[True, True, False])
  assert np.isfinite(values).all()
  assert mask[2, 3, 4, 1] == 0 and mask[2, 3, 4, 0] == swaths[2, 3, 4]
  assert not mask[..., 2].any()
  assert not mask[[0, 1, 3, 5]].any()
  np.testing.assert_array_equal(mask[4, ..., 0], swaths[4])
  observed = mask > 0
  np.testing.assert_array_equal(values[observed], truth[observed])


def test_flat_pde_grid_and_observations_wrapper():
  truth = np.random.default_rng(1).normal(size=(11, 128, 1)).astype(
      np.float32)
  values, mask = obs.synthesize(truth, obs.gridded_mask((128,), 4),
                                obs.observation_times(11, every=2),
                                noise_std=0.1)
  assert mask[2].mean() == 0.25 and not mask[1].any()
  stream = obs.to_observations(values, mask, noise_std=0.1)
  assert stream.values.shape == (11, 128, 1)
  np.testing.assert_array_equal(np.asarray(stream.mask), mask)


def test_synthesis_shape_errors():
  truth = np.zeros((4, 8, 8, 2), np.float32)
  with pytest.raises(ValueError, match="spatial_mask shape"):
    obs.synthesize(truth, np.ones((8, 9), bool))
  with pytest.raises(ValueError, match="time_mask"):
    obs.synthesize(truth, np.ones((8, 8), bool), np.ones(3, bool))
  with pytest.raises(ValueError, match="2 entries"):
    obs.synthesize(truth, np.ones((8, 8), bool), noise_std=[0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match=">= 0"):
    obs.synthesize(truth, np.ones((8, 8), bool), noise_std=-1.0)
  with pytest.raises(ValueError, match=r"\[time, \*spatial, channel\]"):
    obs.synthesize(np.zeros((4, 8)), np.ones(8, bool))
