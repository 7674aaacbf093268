"""Trajectory-dataset I/O: round trips, splits, validation errors, atomicity."""

import os

import numpy as np
import pytest
import xarray as xr

from gencast_control.data import trajectories
from gencast_control.data.trajectories import (TrajectoryDatasetError,
                                               array_to_trajectories,
                                               open_trajectories, split_dataset,
                                               trajectories_to_array,
                                               validate_trajectories, write_dataset,
                                               write_splits)


def _dataset(num_trajectories=10, num_times=4, shape=(3, 5)):
  rng = np.random.default_rng(0)
  dims = ("trajectory", "time", "x", "y")
  size = (num_trajectories, num_times) + shape
  return xr.Dataset(
      {"a": (dims, rng.normal(size=size).astype(np.float32), {"units": "m"}),
       "b": (dims, rng.normal(size=size))},
      coords={"trajectory": np.arange(num_trajectories),
              "time": 0.5 * np.arange(num_times),
              "x": np.linspace(0, 1, shape[0]), "y": np.arange(shape[1])},
      attrs={"system": "toy", "model_dt": 0.5})


@pytest.mark.parametrize("fmt, suffix", [("netcdf", ".nc"), ("zarr", ".zarr")])
def test_round_trip(tmp_path, fmt, suffix):
  ds = _dataset()
  paths = write_splits(split_dataset(ds), tmp_path, fmt)
  assert {p.name for p in paths.values()} == {
      f"{s}{suffix}" for s in ("train", "validation", "test")}
  assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in
                                                paths.values())  # no temps
  parts = [open_trajectories(paths[s]) for s in ("train", "validation",
                                                  "test")]
  back = xr.concat(parts, "trajectory")
  xr.testing.assert_identical(back, ds)
  assert back["a"].dtype == np.float32 and back["b"].dtype == np.float64
  # Rewriting replaces the files in place.
  write_splits({"train": ds.isel(trajectory=[0])}, tmp_path, fmt)
  assert open_trajectories(paths["train"]).sizes["trajectory"] == 1


def test_zarr_stays_lazy_without_load(tmp_path):
  path = write_dataset(_dataset(), tmp_path / "d.zarr")
  lazy = open_trajectories(path, load=False)
  assert lazy["a"].chunks is not None
  validate_trajectories(lazy)  # NaN checks work on dask arrays too
  np.testing.assert_array_equal(lazy["a"].values, _dataset()["a"].values)


@pytest.mark.parametrize("n, fractions, sizes", [
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (20, (0.8, 0.1, 0.1), (16, 2, 2)),
    (11, (0.8, 0.1, 0.1), (9, 1, 1)),
    (5, (0.8, 0.1, 0.1), (3, 1, 1)),  # every positive split gets one
    (7, (0.5, 0.5, 0.0), (4, 3, 0)),
    (2, (0.8, 0.1, 0.1), (2, 0, 0)),  # too few to give each split one
])
def test_split_sizes(n, fractions, sizes):
  ds = _dataset(num_trajectories=n)
  splits = split_dataset(ds, fractions)
  assert tuple(splits) == ("train", "validation", "test")
  assert tuple(s.sizes["trajectory"] for s in splits.values()) == sizes
  joined = np.concatenate([s.trajectory.values for s in splits.values()])
  np.testing.assert_array_equal(joined, np.arange(n))  # contiguous, disjoint


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2),
                                       (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(fractions):
  with pytest.raises(ValueError, match="fractions"):
    split_dataset(_dataset(), fractions)


def _with_nan_and_inf(ds):
  ds = ds.copy(deep=True)
  ds["b"].values[0, 0, 0, :2] = np.nan
  ds["b"].values[1, 2, 1, 3] = np.inf
  return ds


@pytest.mark.parametrize("make_bad, kwargs, message", [
    (lambda ds: ds, dict(variables=["a", "c"]),
     r"\['c'\] missing; the dataset has \['a', 'b'\]"),
    (lambda ds: ds.assign(b=ds["b"].isel(y=0)), dict(),
     r"variable 'b' has dims .*missing dim\(s\) \['y'\]"),
    (lambda ds: ds.isel(x=0), dict(spatial_dims=("x", "y")),
     r"missing dim\(s\) \['x'\]"),
    (lambda ds: ds.expand_dims(level=2, axis=2), dict(spatial_dims=("x", "y")),
     r"unexpected dim\(s\) \['level'\]"),
    (lambda ds: ds.isel(trajectory=0), dict(),
     r"missing dim\(s\) \['trajectory'\]"),
    (lambda ds: ds.transpose("time", "trajectory", "x", "y"), dict(),
     r"order \('time', 'trajectory', 'x', 'y'\).*transpose"),
    (lambda ds: ds.transpose("trajectory", "time", "y", "x"),
     dict(spatial_dims=("x", "y")), r"order .*'y', 'x'"),
    (lambda ds: ds.isel(time=[0]), dict(), "at least 2 times, got 1"),
    (lambda ds: ds.isel(trajectory=[]), dict(), "no trajectories"),
    (_with_nan_and_inf, dict(), r"variable 'b' has 2 NaN and 1 inf values"),
    (lambda ds: ds.assign_coords(time=[0.0, 1.0, 1.0, 2.0]), dict(),
     r"not strictly increasing: time\[1\] = 1.0 is followed by time\[2\]"),
    (lambda ds: ds.assign_coords(time=[3.0, 2.0, 1.0, 0.0]), dict(),
     "not strictly increasing"),
    (lambda ds: ds.assign(a=ds["a"].astype(str)), dict(), "non-numeric"),
    (lambda ds: ds.drop_vars(["a", "b"]), dict(), "no data variables"),
])
def test_validation_errors_name_the_problem(make_bad, kwargs, message):
  validate_trajectories(_dataset())  # the unmodified dataset is valid
  with pytest.raises(TrajectoryDatasetError, match=message):
    validate_trajectories(make_bad(_dataset()), **kwargs)


def test_validation_accepts_good_data_and_returns_spatial_dims():
  ds = _dataset()
  assert validate_trajectories(ds) == ("x", "y")
  assert validate_trajectories(ds, ["a"], ("x", "y")) == ("x", "y")
  assert validate_trajectories(ds, "b") == ("x", "y")
  dated = ds.assign_coords(time=np.datetime64("2020-01-01")
                           + np.arange(4) * np.timedelta64(6, "h"))
  assert validate_trajectories(dated) == ("x", "y")
  # Errors are ValueErrors, as the project's rules ask.
  assert issubclass(TrajectoryDatasetError, ValueError)


def test_stacking_channels_and_inverse():
  ds = _dataset(num_trajectories=2)
  array = trajectories_to_array(ds, ["b", "a"])
  assert array.shape == (2, 4, 3, 5, 2) and array.dtype == np.float32
  np.testing.assert_array_equal(array[..., 0], ds["b"].values.astype(
      np.float32))
  np.testing.assert_array_equal(array[..., 1], ds["a"].values)
  np.testing.assert_array_equal(trajectories_to_array(ds)[..., 0],
                                ds["a"].values)  # default: all, in order

  back = array_to_trajectories(array, ds, ["b", "a"])
  xr.testing.assert_identical(back["a"], ds["a"])
  np.testing.assert_array_equal(back["b"].values, array[..., 0])
  assert back.attrs == ds.attrs and back["a"].attrs == {"units": "m"}

  coords = {"time": ds.time.values, "x": ds.x.values, "y": ds.y.values}
  plain = array_to_trajectories(array, coords, ["b", "a"],
                                attrs={"system": "toy"})
  assert plain["a"].dims == ("trajectory", "time", "x", "y")
  np.testing.assert_array_equal(plain.trajectory.values, [0, 1])
  np.testing.assert_array_equal(plain["a"].values, ds["a"].values)
  assert plain.attrs == {"system": "toy"}


def test_stacking_and_inverse_errors():
  ds = _dataset(num_trajectories=2)
  with pytest.raises(TrajectoryDatasetError, match="same dims"):
    trajectories_to_array(ds.assign(b=ds["b"].transpose(
        "trajectory", "time", "y", "x")), ["a", "b"])
  with pytest.raises(TrajectoryDatasetError, match=r"\['zz'\] missing"):
    trajectories_to_array(ds, ["zz"])
  array = trajectories_to_array(ds, ["a", "b"])
  with pytest.raises(ValueError, match="2 channels but 1 variables"):
    array_to_trajectories(array, ds, ["a"])
  with pytest.raises(ValueError, match="dim 'x' has 3 entries in the array"
                     " but 4 coordinate values"):
    array_to_trajectories(array, {"x": np.arange(4), "y": np.arange(5)},
                          ["a", "b"])
  with pytest.raises(ValueError, match="non-channel axes"):
    array_to_trajectories(array, {"x": np.arange(3)}, ["a", "b"])


def test_open_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    open_trajectories(tmp_path / "nothing.nc")
  junk = tmp_path / "junk.nc"
  junk.write_text("not a netcdf file")
  with pytest.raises(TrajectoryDatasetError, match="cannot read"):
    open_trajectories(junk)
  (tmp_path / "empty.zarr").mkdir()
  with pytest.raises(TrajectoryDatasetError, match="as zarr"):
    open_trajectories(tmp_path / "empty.zarr")


def test_write_rejects_bad_format_and_names(tmp_path):
  with pytest.raises(ValueError, match="unknown format 'hdf'"):
    write_splits({"train": _dataset()}, tmp_path, "hdf")
  with pytest.raises(ValueError, match="plain file name"):
    write_splits({"../train": _dataset()}, tmp_path)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt, method", [("netcdf", "to_netcdf"),
                                         ("zarr", "to_zarr")])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, fmt,
                                             method):
  old = _dataset(num_trajectories=3)
  paths = write_splits({"train": old}, tmp_path, fmt)
  original = getattr(xr.Dataset, method)

  def write_half_then_fail(self, target, *args, **kwargs):
    original(self.isel(trajectory=[0]), target, *args, **kwargs)
    raise OSError("disk full")

  monkeypatch.setattr(xr.Dataset, method, write_half_then_fail)
  with pytest.raises(OSError, match="disk full"):
    write_splits({"train": _dataset(), "test": _dataset()}, tmp_path, fmt)
  monkeypatch.undo()
  assert sorted(os.listdir(tmp_path)) == [paths["train"].name]  # no temps
  xr.testing.assert_identical(open_trajectories(paths["train"]), old)


def test_ks_dataset_is_a_valid_trajectory_dataset(tmp_path):
  import jax

  from gencast_control.systems.ks import KSConfig, generate_ks_dataset
  ds = generate_ks_dataset(jax.random.PRNGKey(0), 2, 3,
                           KSConfig(num_points=16, domain_length=12.0),
                           burn_in_steps=2)
  path = trajectories.write_dataset(ds, tmp_path / "ks.zarr")
  back = open_trajectories(path)
  assert validate_trajectories(back, ["u"], ["x"]) == ("x",)
  assert trajectories_to_array(back, ["u"]).shape == (2, 4, 16, 1)
  assert back.attrs["system"] == "kuramoto_sivashinsky"
