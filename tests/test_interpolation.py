"""The observation operator H against brute force."""

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from gencast_control.core.interpolation import (Grid, apply_operator,
                                                apply_operator_at,
                                                point_operator)

POLES_LAT = np.arange(-90.0, 90.1, 10.0)  # 19 rows with the poles
POLES_LON = np.arange(0.0, 351.0, 10.0)  # 36
GAUSS_LAT = -87.1875 + 5.625 * np.arange(32)  # 32 rows, no poles
GAUSS_LON = 5.625 * np.arange(64)

GRIDS = {"poles": (POLES_LAT, POLES_LON), "no_poles": (GAUSS_LAT, GAUSS_LON)}


def sphere(lat, lon) -> Grid:
  return Grid.from_coords(("lat", "lon"), {"lat": lat, "lon": lon},
                          (False, True), sphere=True)


def smooth_field(lat, lon, rng, batch=()):
  """A random smooth field [*batch, lat, lon], continuous across the seam."""
  la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
  a = rng.normal(size=batch + (4, 1, 1))
  return (a[..., 0, :, :] * np.cos(la) * np.cos(lo)
          + a[..., 1, :, :] * np.sin(2 * la) + a[..., 2, :, :] * np.sin(lo)
          + a[..., 3, :, :] * np.cos(la) * np.sin(2 * lo + 1.0))


def random_points(lat, rng, size=200):
  return {"lat": rng.uniform(lat[0], lat[-1], size),
          "lon": rng.uniform(-400.0, 800.0, size)}


@pytest.mark.parametrize("name", GRIDS)
def test_nearest_is_the_argmin_over_the_grid(name):
  lat, lon = GRIDS[name]
  rng = np.random.default_rng(0)
  grid = sphere(lat, lon)
  points = random_points(lat, rng)
  field = smooth_field(lat, lon, rng, (3,))
  idx, w = point_operator(grid, points, "nearest")
  assert idx.shape == w.shape == (200, 1) and np.all(w == 1.0)
  # brute force: the grid point with the least (lat, lon) distance in
  # degrees, lon wrapped, over the full grid
  dlat = lat[:, None, None] - points["lat"]
  dlon = np.abs(lon[None, :, None] - points["lon"]) % 360.0
  dlon = np.minimum(dlon, 360.0 - dlon)
  flat = np.argmin((dlat**2 + dlon**2).reshape(-1, 200), axis=0)
  lat_i, lon_i = np.unravel_index(flat, grid.shape)
  np.testing.assert_array_equal(idx[:, 0], lat_i * len(lon) + lon_i)
  np.testing.assert_allclose(apply_operator(field, idx, w, shape=grid.shape),
                             field[:, lat_i, lon_i])


@pytest.mark.parametrize("name", GRIDS)
def test_linear_matches_scipy_on_a_lon_extended_grid(name):
  lat, lon = GRIDS[name]
  rng = np.random.default_rng(1)
  grid = sphere(lat, lon)
  points = random_points(lat, rng)
  field = smooth_field(lat, lon, rng)
  idx, w = point_operator(grid, points, "linear")
  assert idx.shape == (200, 4)
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
  assert (w >= 0).all()
  extended = np.concatenate([field, field[:, :1]], axis=1)
  reference = RegularGridInterpolator((lat, np.append(lon, 360.0)), extended)(
      np.stack([points["lat"], points["lon"] % 360.0], -1))
  np.testing.assert_allclose(apply_operator(field, idx, w, shape=grid.shape),
                             reference, rtol=1e-12, atol=1e-12)


def test_linear_reproduces_a_linear_field_within_a_cell():
  grid = sphere(GAUSS_LAT, GAUSS_LON)
  field = 2.0 * GAUSS_LAT[:, None] - 0.5 * GAUSS_LON[None, :] + 3.0
  rng = np.random.default_rng(2)
  # inside cells away from the seam, where the field is linear
  points = {"lat": rng.uniform(GAUSS_LAT[0], GAUSS_LAT[-1], 50),
            "lon": rng.uniform(0.0, GAUSS_LON[-1], 50)}
  idx, w = point_operator(grid, points, "linear")
  np.testing.assert_allclose(
      apply_operator(field, idx, w, shape=grid.shape),
      2.0 * points["lat"] - 0.5 * points["lon"] + 3.0, rtol=1e-12)


def test_linear_across_the_lon_seam():
  grid = sphere(POLES_LAT, POLES_LON)
  field = np.zeros(grid.shape)
  field[:, -1] = 1.0  # lon 350
  field[:, 0] = 3.0   # lon 0 = 360
  for lon in (355.0, -5.0, 715.0):
    idx, w = point_operator(grid, {"lat": [20.0], "lon": [lon]}, "linear")
    assert apply_operator(field, idx, w, shape=grid.shape)[0] == \
        pytest.approx(2.0)
  idx, _ = point_operator(grid, {"lat": [20.0], "lon": [356.0]}, "nearest")
  assert idx[0, 0] == 11 * 36 + 0  # lat 20 is row 11; lon 0 is nearer


def test_between_the_outermost_row_and_the_pole():
  grid = sphere(GAUSS_LAT, GAUSS_LON)
  rng = np.random.default_rng(3)
  field = smooth_field(GAUSS_LAT, GAUSS_LON, rng)
  lon = rng.uniform(0.0, 360.0, 20)
  for lat, row in ((89.0, -1), (90.0, -1), (-88.5, 0), (-90.0, 0)):
    idx, w = point_operator(grid, {"lat": np.full(20, lat), "lon": lon},
                            "linear")
    row_values = np.append(field[row], field[row, 0])
    expected = np.interp(lon, np.append(GAUSS_LON, 360.0), row_values)
    np.testing.assert_allclose(apply_operator(field, idx, w,
                                              shape=grid.shape), expected,
                               rtol=1e-12)


def test_flat_periodic_axis_wraps():
  n = 8
  grid = Grid.from_coords(("x",), {"x": np.arange(n, dtype=float)}, (True,))
  assert grid.period(0) == n
  field = np.arange(n, dtype=float) ** 2
  idx, w = point_operator(grid, {"x": [7.5, -0.5, 15.5, 3.25]}, "linear")
  np.testing.assert_allclose(apply_operator(field, idx, w, shape=grid.shape),
                             [(49 + 0) / 2, (49 + 0) / 2, (49 + 0) / 2,
                              9 + 0.25 * 7])
  idx, _ = point_operator(grid, {"x": [7.6, -0.4, 8.2]}, "nearest")
  np.testing.assert_array_equal(idx[:, 0], [0, 0, 0])


def test_flat_non_periodic_axis_clamps_at_its_edges():
  grid = Grid.from_coords(("y", "x"), {"y": [0.0, 1.0, 3.0],
                                       "x": [0.0, 2.0]}, (False, False))
  field = np.array([[0.0, 2.0], [1.0, 3.0], [3.0, 5.0]])  # y + x
  points = {"y": [0.0, 3.0, 2.0, 3.0], "x": [0.0, 2.0, 1.0, 0.5]}
  idx, w = point_operator(grid, points, "linear")
  np.testing.assert_allclose(apply_operator(field, idx, w, shape=grid.shape),
                             [0.0, 5.0, 3.0, 3.5])


def test_apply_operator_at_picks_a_step_and_channel_per_point():
  rng = np.random.default_rng(4)
  grid = sphere(POLES_LAT, POLES_LON)
  states = rng.normal(size=(2, 5) + grid.shape + (3,))  # [M, T, lat, lon, C]
  points = random_points(POLES_LAT, rng, 30)
  step = rng.integers(0, 5, 30)
  channel = rng.integers(0, 3, 30)
  idx, w = point_operator(grid, points, "linear")
  out = apply_operator_at(states, step, channel, idx, w, shape=grid.shape)
  assert out.shape == (2, 30)
  for p in range(30):
    field = states[:, step[p], ..., channel[p]]
    np.testing.assert_allclose(
        out[:, p], apply_operator(field, idx[p:p + 1], w[p:p + 1],
                                  shape=grid.shape)[:, 0])
  with pytest.raises(ValueError, match="step spans"):
    apply_operator_at(states, step + 5, channel, idx, w, shape=grid.shape)
  with pytest.raises(ValueError, match="spatial shape"):
    apply_operator(states, idx, w, shape=(4, 4))


def test_descending_coordinate_is_refused():
  with pytest.raises(ValueError, match="'lat' is not strictly ascending"):
    Grid.from_coords(("lat", "lon"), {"lat": POLES_LAT[::-1],
                                      "lon": POLES_LON}, (False, True),
                     sphere=True)
  with pytest.raises(ValueError, match="'x' is not uniform"):
    Grid.from_coords(("x",), {"x": [0.0, 1.0, 3.0]}, (True,))


@pytest.mark.parametrize("points, message", [
    ({"lat": [10.0, 95.0], "lon": [0.0, 0.0]},
     r"stations.csv: lat = 95 at row 2 lies outside the grid's \[-90, 90\]"),
    ({"lat": [10.0, -91.0], "lon": [0.0, 0.0]}, "lat = -91 at row 2"),
    ({"lat": [np.nan, 0.0], "lon": [0.0, 0.0]},
     "stations.csv: lat = nan at row 1 is not a finite number"),
    ({"lat": [0.0, 0.0], "lon": [0.0, np.inf]},
     "lon = inf at row 2 is not a finite number"),
    ({"lat": [0.0]}, "no position column 'lon'"),
])
def test_bad_positions_raise_naming_the_dim(points, message):
  grid = sphere(POLES_LAT, POLES_LON)
  with pytest.raises(ValueError, match=message):
    point_operator(grid, points, "linear", where="stations.csv")


def test_outside_a_flat_axis_raises():
  grid = Grid.from_coords(("x",), {"x": [0.0, 1.0, 2.0]}, (False,))
  grid.check_inside({"x": [0.0, 2.0]}, "obs.nc")
  with pytest.raises(ValueError, match=r"obs.nc: x = 2.5 at row 1 .*\[0, 2\]"):
    grid.check_inside({"x": [2.5]}, "obs.nc")
  with pytest.raises(ValueError, match="method must be"):
    point_operator(grid, {"x": [1.0]}, "cubic")
