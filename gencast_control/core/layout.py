"""How a model's state [*spatial, C] reads as xarray: names, levels, grid, step.

A StateLayout lists the channels of the state as (variable, level) pairs in
the model's channel order, the spatial dims and their coordinates, and the
model's time step. Every xarray input is aligned to it by name and by
coordinate, never by position: variables are picked by name, levels by
value, and a grid whose coordinates are the model's in another order (a
descending latitude) is reindexed; any other grid is refused with a one-line
error naming the dim. Outputs are always labelled with the model's
coordinates.

Models that know their grid (GenCast) give their layout
(FrozenARDM.layout); for the grid models it is read from the user's initial
state (`StateLayout.from_dataset`).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from gencast_control.core.times import TimeStep

LEVEL = "level"


@dataclasses.dataclass(frozen=True, eq=False)
class StateLayout:
  """The channels, grid and time step of a model's state.

  variables: the distinct variable names, in channel order.
  levels: per variable, its levels (e.g. hPa) or () for a single field.
  dims: the spatial dims, e.g. ("x",) or ("lat", "lon").
  coords: per dim, its 1-D coordinate (ascending).
  periodic: per dim, whether it wraps.
  sphere: dims are (lat, lon) in degrees on the sphere.
  timestep: dt, a float or a np.timedelta64.
  missing_in_history: variables that may be absent from an initial state
    (their history is NaN: GenCast's targets that are not inputs).
  """
  variables: tuple[str, ...]
  levels: tuple[tuple[float, ...], ...]
  dims: tuple[str, ...]
  coords: tuple[np.ndarray, ...]
  periodic: tuple[bool, ...]
  timestep: TimeStep = 1.0
  sphere: bool = False
  missing_in_history: tuple[str, ...] = ()

  def __post_init__(self):
    if len(self.levels) != len(self.variables):
      raise ValueError("one level tuple per variable is needed")
    if not (len(self.dims) == len(self.coords) == len(self.periodic)):
      raise ValueError("dims, coords and periodic must have equal lengths")

  @classmethod
  def from_dataset(cls, ds: xr.Dataset, variables: Sequence[str] | None,
                   periodic: Sequence[bool], timestep: TimeStep = 1.0,
                   where: str = "the initial state") -> "StateLayout":
    """A single-level layout read off a state dataset (its spatial dims are
    those of its first variable that are not sample/time)."""
    if not isinstance(ds, xr.Dataset):
      raise ValueError(f"{where} must be an xarray Dataset, got"
                       f" {type(ds).__name__}")
    if not ds.data_vars:
      raise ValueError(f"{where} has no variables")
    variables = tuple(variables or ds.data_vars)
    missing = [v for v in variables if v not in ds]
    if missing:
      raise ValueError(f"{where} has no variable(s) {missing}; it has"
                       f" {list(ds.data_vars)}")
    dims = tuple(d for d in ds[variables[0]].dims
                 if d not in ("sample", "time", "history", "trajectory"))
    if len(dims) != len(tuple(periodic)):
      raise ValueError(f"{where} has spatial dims {dims}; the model has"
                       f" {len(tuple(periodic))}")
    coords = []
    for d in dims:
      if d not in ds.coords:
        raise ValueError(f"{where} has no coordinate for its dim {d!r}")
      c = np.asarray(ds[d].values, np.float64)
      coords.append(np.sort(c))
    return cls(variables, ((),) * len(variables), dims, tuple(coords),
               tuple(bool(p) for p in periodic), timestep)

  # --- channels ---------------------------------------------------------------

  @property
  def channels(self) -> tuple[tuple[str, float | None], ...]:
    return tuple((v, level) for v, levels in zip(self.variables, self.levels)
                 for level in (levels or (None,)))

  @property
  def channel_names(self) -> tuple[str, ...]:
    return tuple(v if level is None else f"{v}@{level:g}"
                 for v, level in self.channels)

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(len(c) for c in self.coords) + (len(self.channels),)

  def channel_index(self, variables: Sequence[str], levels=None,
                    where: str = "the observations") -> np.ndarray:
    """[P] channel of each (variable, level); level NaN/None = single field.
    ValueError naming a variable the model does not predict or a level it
    does not have."""
    index = {}
    for c, (v, level) in enumerate(self.channels):
      index[(v, None if level is None else float(level))] = c
    levels = [None] * len(variables) if levels is None else list(levels)
    out = np.empty(len(variables), np.int64)
    for i, (v, level) in enumerate(zip(variables, levels)):
      level = None if level is None or (isinstance(level, float)
                                        and np.isnan(level)) else float(level)
      if v not in self.variables:
        raise ValueError(f"{where}: variable {v!r} is not one the model"
                         f" predicts ({', '.join(self.variables)})")
      if (v, level) not in index:
        have = self.levels[self.variables.index(v)]
        raise ValueError(
            f"{where}: {v!r} " + (f"has no level {level:g}; the model has"
                                  f" {[float(x) for x in have]}" if have and
                                  level is not None else
                                  "needs a level" if have else
                                  f"is a single field, got level {level:g}"))
      out[i] = index[(v, level)]
    return out

  # --- xarray <-> arrays ------------------------------------------------------

  def align(self, da: xr.DataArray, where: str) -> xr.DataArray:
    """da on the model's grid: coordinates equal, or the same values in
    another order (reindexed); ValueError naming the dim otherwise."""
    for d, c in zip(self.dims, self.coords):
      if d not in da.dims:
        raise ValueError(f"{where}: {da.name!r} has no dim {d!r} (dims"
                         f" {da.dims}); the model's grid is {self.dims}")
      if d not in da.coords:
        raise ValueError(f"{where}: {da.name!r} has no coordinate for dim"
                         f" {d!r}")
      have = np.asarray(da[d].values, np.float64)
      if have.shape == c.shape and np.allclose(have, c, atol=1e-6):
        continue
      if have.shape == c.shape and np.allclose(np.sort(have), c, atol=1e-6):
        da = da.sortby(d)
        continue
      raise ValueError(
          f"{where}: the {d!r} coordinate ({len(have)} values,"
          f" {have.min() if have.size else '-'}..{have.max() if have.size else '-'})"
          f" is not the model's ({len(c)} values, {c[0]:g}..{c[-1]:g})")
    return da.assign_coords({d: c for d, c in zip(self.dims, self.coords)})

  def stack(self, ds: xr.Dataset, leading: Sequence[str],
            where: str = "the dataset", allow_missing: bool = False
            ) -> np.ndarray:
    """[*leading, *spatial, C] float32 from ds, variables and levels by name.
    allow_missing: variables of `missing_in_history` absent from ds are NaN."""
    if not isinstance(ds, xr.Dataset):
      raise ValueError(f"{where} must be an xarray Dataset, got"
                       f" {type(ds).__name__}")
    fields = []
    sizes = None
    for v, levels in zip(self.variables, self.levels):
      if v not in ds:
        if allow_missing and v in self.missing_in_history:
          fields.append((None, len(levels) or 1))
          continue
        raise ValueError(f"{where} has no variable {v!r}; it has"
                         f" {list(ds.data_vars)}")
      da = self.align(ds[v], where)
      if levels:
        if LEVEL not in da.dims:
          raise ValueError(f"{where}: {v!r} has no {LEVEL!r} dim; the model"
                           f" needs levels {list(levels)}")
        lacking = sorted(set(levels) - set(float(x) for x in da[LEVEL].values))
        if lacking:
          raise ValueError(f"{where}: {v!r} lacks level(s) {lacking}")
        da = da.sel({LEVEL: list(levels)})
      extra = set(da.dims) - set(leading) - set(self.dims) - {LEVEL}
      if extra:
        raise ValueError(f"{where}: {v!r} has dims {sorted(extra)} that are"
                         f" neither {tuple(leading)} nor the grid's")
      lacking = [d for d in leading if d not in da.dims]
      if lacking:
        raise ValueError(f"{where}: {v!r} has no dim(s) {lacking}")
      order = tuple(leading) + self.dims + ((LEVEL,) if levels else ())
      array = np.asarray(da.transpose(*order).values, np.float32)
      if not levels:
        array = array[..., None]
      sizes = array.shape[:len(leading)]
      fields.append((array, len(levels) or 1))
    if sizes is None:
      raise ValueError(f"{where} has none of the model's variables")
    out = [np.full(sizes + self.shape[:-1] + (n,), np.nan, np.float32)
           if a is None else a for a, n in fields]
    return np.concatenate(out, axis=-1)

  def unstack(self, array: np.ndarray, leading: Mapping[str, np.ndarray],
              attrs: dict | None = None) -> xr.Dataset:
    """Inverse of `stack`: [*leading, *spatial, C] -> Dataset with dims
    (*leading, [level,] *spatial), labelled with the model's coordinates."""
    array = np.asarray(array)
    coords = dict(leading)
    coords.update(zip(self.dims, self.coords))
    data, start = {}, 0
    for v, levels in zip(self.variables, self.levels):
      n = len(levels) or 1
      block = array[..., start:start + n]
      start += n
      if levels:
        block = np.moveaxis(block, -1, len(leading))
        data[v] = (tuple(leading) + (LEVEL,) + self.dims, block)
        coords[LEVEL] = np.asarray(levels)
      else:
        data[v] = (tuple(leading) + self.dims, block[..., 0])
    return xr.Dataset(data, coords=coords, attrs=attrs or {})
