"""The observation operator H: a gridded field at off-grid points.

A point operator is a sparse matrix stored as (indices [P, K], weights
[P, K]): the value of field x at point p is

    H(x)_p = sum_k weights[p, k] * x_flat[indices[p, k]],

with x_flat the C-order flattening of x's spatial dims and sum_k w = 1.

"linear" is multilinear interpolation in the coordinates (K = 2**ndim
corners of the cell holding the point); "nearest" takes, on each axis
separately, the grid coordinate nearest to the point's (K = 1). On the
sphere that is the nearest (lat, lon) grid point in degrees, not in
great-circle distance; the two agree except near the poles.

Axes may be non-uniform (e.g. Gaussian latitudes). A periodic axis wraps:
on a flat grid its period is n * dx (the axis x_0, x_0 + dx, ..,
x_0 + (n-1) dx must be uniform); on the sphere longitude has period 360
whatever its coordinates, so a point at 355 on a 0..350 grid lies between
350 and 0 (= 360). Non-periodic axes clamp: a point on the last coordinate
uses the last cell.

Poles: on the sphere a latitude between the outermost grid row and the pole
(e.g. 89 on a grid without poles whose last row is 87.19) is valid and takes
the outermost row's values, interpolated in longitude (the field is held
constant in latitude beyond the last row; no interpolation across the pole).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, Sequence

import numpy as np

METHODS = ("nearest", "linear")


@dataclasses.dataclass(frozen=True, eq=False)
class Grid:
  """A rectilinear grid: one strictly ascending 1-D coordinate per dim.

  dims: the spatial dims in array order, e.g. ("lat", "lon") or ("x",).
  coords: their coordinates (float64, strictly ascending).
  periodic: per dim, whether the axis wraps.
  sphere: dims are (latitude, longitude) in degrees; longitude periodic with
    period 360, latitude not periodic and valid on [-90, 90] (module doc).
  """
  dims: tuple[str, ...]
  coords: tuple[np.ndarray, ...]
  periodic: tuple[bool, ...]
  sphere: bool = False

  @classmethod
  def from_coords(cls, dims: Sequence[str], coords: Mapping[str, np.ndarray],
                  periodic: Sequence[bool], sphere: bool = False) -> "Grid":
    """A checked grid; ValueError names the dim of a bad coordinate."""
    dims = tuple(str(d) for d in dims)
    periodic = tuple(bool(p) for p in periodic)
    if len(periodic) != len(dims):
      raise ValueError(f"grid: {len(dims)} dims {list(dims)} but"
                       f" {len(periodic)} periodic flags")
    if sphere and (len(dims) != 2 or periodic != (False, True)):
      raise ValueError(f"grid: a sphere has dims (lat, lon) with periodic"
                       f" (False, True); got dims {list(dims)}, periodic"
                       f" {list(periodic)}")
    arrays = []
    for d, wrap in zip(dims, periodic):
      if d not in coords:
        raise ValueError(f"grid: no coordinate for dim {d!r}")
      try:
        c = np.asarray(coords[d], np.float64)
      except (TypeError, ValueError):
        raise ValueError(f"grid: coordinate {d!r} is not numeric") from None
      if c.ndim != 1 or c.size == 0:
        raise ValueError(f"grid: coordinate {d!r} must be 1-D and non-empty,"
                         f" got shape {c.shape}")
      if not np.isfinite(c).all():
        raise ValueError(f"grid: coordinate {d!r} has NaN or inf")
      if c.size > 1 and not (np.diff(c) > 0).all():
        i = int(np.argmax(np.diff(c) <= 0))
        raise ValueError(f"grid: coordinate {d!r} is not strictly ascending"
                         f" ({c[i]:g} then {c[i + 1]:g} at index {i + 1})")
      if wrap and not sphere:
        if c.size < 2:
          raise ValueError(f"grid: periodic dim {d!r} needs >= 2 points")
        step = np.diff(c)
        if not np.allclose(step, step[0], rtol=1e-6, atol=0.0):
          raise ValueError(f"grid: periodic dim {d!r} is not uniform (its"
                           " period n * dx needs a uniform spacing)")
      arrays.append(c)
    if sphere:
      lat, lon = arrays
      if lat[0] < -90.0 or lat[-1] > 90.0:
        raise ValueError(f"grid: latitude {dims[0]!r} spans {lat[0]:g} ..."
                         f" {lat[-1]:g}, outside [-90, 90]")
      if lon[-1] - lon[0] >= 360.0:
        raise ValueError(f"grid: longitude {dims[1]!r} spans {lon[0]:g} .."
                         f" {lon[-1]:g}, 360 degrees or more")
    return cls(dims, tuple(arrays), periodic, bool(sphere))

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(len(c) for c in self.coords)

  @property
  def ndim(self) -> int:
    return len(self.dims)

  def period(self, axis: int) -> float | None:
    """360 for the sphere's longitude, n * dx for a periodic flat axis."""
    if not self.periodic[axis]:
      return None
    if self.sphere:
      return 360.0
    c = self.coords[axis]
    return len(c) * (c[-1] - c[0]) / (len(c) - 1)

  def bounds(self, axis: int) -> tuple[float, float] | None:
    """The valid interval of a non-periodic axis (None: periodic)."""
    if self.periodic[axis]:
      return None
    if self.sphere:
      return -90.0, 90.0
    return float(self.coords[axis][0]), float(self.coords[axis][-1])

  def check_inside(self, positions: Mapping[str, np.ndarray],
                   where: str) -> None:
    """ValueError if a position is missing, not numeric, NaN/inf, or outside
    a non-periodic axis (rows are reported 1-based, as data rows of a
    table without its header)."""
    size = None
    for axis, d in enumerate(self.dims):
      if d not in positions:
        raise ValueError(f"{where}: no position column {d!r} (the grid's"
                         f" dims are {list(self.dims)})")
      try:
        p = np.asarray(positions[d], np.float64).reshape(-1)
      except (TypeError, ValueError):
        raise ValueError(f"{where}: position {d!r} is not numeric") from None
      if size is not None and p.size != size:
        raise ValueError(f"{where}: position {d!r} has {p.size} entries,"
                         f" the others {size}")
      size = p.size
      bad = ~np.isfinite(p)
      if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{where}: {d} = {p[i]} at row {i + 1} is not a"
                         " finite number")
      span = self.bounds(axis)
      if span is not None:
        bad = (p < span[0]) | (p > span[1])
        if bad.any():
          i = int(np.argmax(bad))
          raise ValueError(f"{where}: {d} = {p[i]:g} at row {i + 1} lies"
                           f" outside the grid's [{span[0]:g}, {span[1]:g}]")


def _axis_cell(grid: Grid, axis: int, p: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(i0, i1, f): p lies a fraction f in [0, 1] of the way from coordinate
  i0 to its upper neighbour i1 (wrapped on a periodic axis, clamped on a
  non-periodic one)."""
  c = grid.coords[axis]
  n = len(c)
  if grid.periodic[axis]:
    period = grid.period(axis)
    p = c[0] + np.mod(p - c[0], period)  # into [c_0, c_0 + period]
    ext = np.append(c, c[0] + period)
    i0 = np.clip(np.searchsorted(ext, p, side="right") - 1, 0, n - 1)
    f = (p - ext[i0]) / (ext[i0 + 1] - ext[i0])
    return i0, (i0 + 1) % n, np.clip(f, 0.0, 1.0)
  if n == 1:
    zero = np.zeros(p.shape, np.int64)
    return zero, zero, np.zeros(p.shape)
  p = np.clip(p, c[0], c[-1])  # the sphere's polar caps: the outermost row
  i0 = np.clip(np.searchsorted(c, p, side="right") - 1, 0, n - 2)
  f = (p - c[i0]) / (c[i0 + 1] - c[i0])
  return i0, i0 + 1, np.clip(f, 0.0, 1.0)


def point_operator(grid: Grid, positions: Mapping[str, np.ndarray],
                   method: str, *, where: str = "points"
                   ) -> tuple[np.ndarray, np.ndarray]:
  """H as (indices [P, K] int64 into the C-order flattened grid, weights
  [P, K] float64 summing to 1 over k).

  positions: {dim: [P] coordinates} (a DataFrame works; other keys are
    ignored). They are checked with `grid.check_inside(positions, where)`.
  method: "nearest" (K = 1, nearest coordinate per axis) or "linear"
    (K = 2**ndim, weights prod_d (1 - f_d or f_d) over the cell's corners).
  """
  if method not in METHODS:
    raise ValueError(f"{where}: method must be one of {list(METHODS)}, got"
                     f" {method!r}")
  grid.check_inside(positions, where)
  cells = [_axis_cell(grid, a, np.asarray(positions[d], np.float64).ravel())
           for a, d in enumerate(grid.dims)]
  if method == "nearest":
    index = [np.where(f > 0.5, i1, i0) for i0, i1, f in cells]
    flat = np.ravel_multi_index(index, grid.shape)
    return flat[:, None].astype(np.int64), np.ones((flat.size, 1))
  indices, weights = [], []
  for corner in itertools.product((0, 1), repeat=grid.ndim):
    index = [i1 if c else i0 for c, (i0, i1, _) in zip(corner, cells)]
    weight = np.prod([f if c else 1.0 - f
                      for c, (_, _, f) in zip(corner, cells)], axis=0)
    indices.append(np.ravel_multi_index(index, grid.shape))
    weights.append(weight)
  return (np.stack(indices, -1).astype(np.int64),
          np.stack(weights, -1).astype(np.float64))


def _check_operator(indices, weights, size: int) -> tuple[np.ndarray,
                                                          np.ndarray]:
  indices = np.asarray(indices)
  weights = np.asarray(weights, np.float64)
  if indices.ndim != 2 or indices.shape != weights.shape:
    raise ValueError(f"operator: indices {indices.shape} and weights"
                     f" {weights.shape} must both be [P, K]")
  if indices.size and (indices.min() < 0 or indices.max() >= size):
    raise ValueError(f"operator: indices span {indices.min()} .."
                     f" {indices.max()}, outside the grid's 0 .. {size - 1}")
  return indices, weights


def _spatial(shape: Sequence[int], array_shape: tuple[int, ...], lead: int,
             trail: int, name: str) -> int:
  """Checks array_shape = (..., [lead dims], *shape, [trail dims])."""
  shape = tuple(int(s) for s in shape)
  n = len(shape)
  got = array_shape[len(array_shape) - n - trail:len(array_shape) - trail]
  if len(array_shape) < n + lead + trail or got != shape:
    raise ValueError(f"operator: {name} of shape {array_shape} does not end"
                     f" in the grid's spatial shape {shape}"
                     + (" and a channel axis" if trail else ""))
  return int(np.prod(shape))


def apply_operator(fields: np.ndarray, indices: np.ndarray,
                   weights: np.ndarray, *, shape: Sequence[int]
                   ) -> np.ndarray:
  """H(x): fields [..., *shape] -> [..., P],
  out[..., p] = sum_k weights[p, k] * fields_flat[..., indices[p, k]].

  shape: the grid's spatial shape (`grid.shape`).
  """
  fields = np.asarray(fields)
  size = _spatial(shape, fields.shape, 0, 0, "fields")
  indices, weights = _check_operator(indices, weights, size)
  flat = fields.reshape(fields.shape[:fields.ndim - len(shape)] + (size,))
  return (flat[..., indices] * weights).sum(-1)


def apply_operator_at(states: np.ndarray, step: np.ndarray,
                      channel: np.ndarray, indices: np.ndarray,
                      weights: np.ndarray, *, shape: Sequence[int]
                      ) -> np.ndarray:
  """H(x) with a time step and channel per point: states [..., T, *shape, C]
  -> [..., P], out[..., p] = sum_k weights[p, k]
  * states_flat[..., step[p], indices[p, k], channel[p]].
  """
  states = np.asarray(states)
  size = _spatial(shape, states.shape, 1, 1, "states")
  indices, weights = _check_operator(indices, weights, size)
  steps, channels = states.shape[-len(shape) - 2], states.shape[-1]
  step, channel = (np.asarray(v).reshape(-1) for v in (step, channel))
  for name, v, n in (("step", step, steps), ("channel", channel, channels)):
    if v.size and not np.array_equal(v, np.round(v)):
      raise ValueError(f"operator: {name} must be integers, got {v[:3]}")
    if v.shape != (len(indices),):
      raise ValueError(f"operator: {name} has {v.size} entries for"
                       f" {len(indices)} points")
    if v.size and (v.min() < 0 or v.max() >= n):
      raise ValueError(f"operator: {name} spans {v.min()} .. {v.max()},"
                       f" outside the states' 0 .. {n - 1}")
  step, channel = step.astype(np.int64), channel.astype(np.int64)
  flat = states.reshape(states.shape[:states.ndim - len(shape) - 2]
                        + (steps, size, channels))
  picked = flat[..., step[:, None], indices, channel[:, None]]
  return (picked * weights).sum(-1)
