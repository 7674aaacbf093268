"""DeepMind's GenCast as a FrozenARDM: the project's protocol, rollout and training.

The state is GenCast's target channels on its grid, [lat, lon, C] in physical
units, stacked in ChannelLayout order (channels.py); the history is
GenCast's h input frames (2 for its 24 h of 12 h steps). GenCast also needs
inputs that are not states, which travel as the per-step context of the
protocol (gencast_control.core.ardm): its forcing variables at the h input times
and the predicted time, {name: [h + 1, *dims]}. Static inputs (land-sea mask,
surface geopotential) are fixed by the grid and taken once from an example.

`step` rebuilds GenCast's (inputs, targets_template, forcings) Datasets from
these arrays and calls the same ControlledGenCast as GenCastPredictor with the
same key, so ardm.step(history, key, context=c) is predictor(key, inputs,
template, forcings) stacked: with u = 0, DeepMind's sample. Through this class
GenCast runs the project's rollout (gencast_control.core.assimilation.rollout),
controller init/save/load (gencast_control.core.controller) and controller
training with every objective (gencast_control.training.controller_training), the
same code as the PDE models. `trajectories` turns GenCast examples (host-side
xarray) into the [N, T, lat, lon, C] trajectories and context that training
takes.

A target that is not an input (total_precipitation_12hr) has no value at the
input times: its history frames are NaN, which GenCast never reads and the
objectives never score.

Memory of training (remat). Each sub-step's update (both denoiser calls and
the controller) is rematerialised, so the backward pass keeps about one to
three [lat, lon, C] arrays per sub-step and member and recomputes one
sub-step at a time. Measured with XLA's memory analysis on the tiny GenCast
(19 x 36, window 1, one member, before this class): 14.8 MiB of temporaries
with remat, 356 MiB without (24x less). Estimated for DeepMind's task
(C = 84, N = 20 sub-steps, float32), per member and forecast step:

    saved per sub-step: 1 deg (65,160 points): 21 MiB per array,
                        ~1.2 GiB over 20 sub-steps (3 arrays each);
                        0.25 deg (1,038,240 points): 333 MiB per array,
                        ~20 GiB over 20 sub-steps;
    transient (one sub-step recomputed): the controller features (212 MiB at
                        1 deg, 3.3 GiB at 0.25 deg for H = 2) plus one
                        backward pass of two GenCast denoiser calls, roughly
                        twice GenCast's inference footprint (DeepMind's GPU
                        figures: ~16 GB at 1 deg, ~60 GB at 0.25 deg).

So 1 deg trains on one 80 GB accelerator for small window x members x
batch, while 0.25 deg needs its saved states and the denoiser backward
sharded over devices. These totals are estimates: no accelerator was
available to measure them (benchmarks/gencast_step.py --grad reports the
peak where one is).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.adapters.gencast.assets import GenCastModel
from gencast_control.adapters.gencast.channels import (ChannelLayout,
                                                       ChannelStats, check_call)
from gencast_control.adapters.gencast.controller import (LAT_LON_PERIODIC,
                                                         gencast_fingerprint)
from gencast_control.adapters.gencast.predictor import (forward_transform,
                                                        stack_conditioning)
from gencast_control.adapters.gencast.upstream import upstream
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.layout import StateLayout
from gencast_control.data.era5_schema import (PROGRESS_FORCINGS,
                                              progress_forcings)
from gencast_control.core.regimes import ObservationRegime


def _one(ds: xr.Dataset) -> xr.Dataset:
  return ds.isel(batch=[0]) if "batch" in ds.dims else ds.expand_dims("batch")


def _time_first(da: xr.DataArray) -> xr.DataArray:
  return da.transpose("batch", "time", ...)


class GenCastARDM(FrozenARDM):
  """GenCast (weights, statistics, sampler) behind the FrozenARDM protocol."""

  def __init__(self, model: GenCastModel, inputs: xr.Dataset,
               targets_template: xr.Dataset, forcings: xr.Dataset):
    """Args:
      model: the frozen GenCast.
      inputs, targets_template, forcings: one example (any batch size, only
        its structure, coordinates and static inputs are used), e.g. from
        data_utils.extract_inputs_targets_forcings.
    """
    check_call(inputs, targets_template.isel(time=[0]),
               forcings.isel(time=[0]), model.task_config, model.grid_shape)
    self.model = model
    self.channel_layout = ChannelLayout.from_template(targets_template)
    self._inputs = _one(inputs)
    self._template = xr.zeros_like(_one(targets_template).isel(time=[0]))
    self._forcings = _one(forcings).isel(time=[0])
    self.forcing_variables = tuple(forcings.data_vars)
    self._dynamic = tuple(v for v in inputs.data_vars
                          if "time" in inputs[v].dims)
    unknown = sorted(set(self._dynamic) - set(self.channel_layout.variables)
                     - set(self.forcing_variables))
    if unknown:
      raise ValueError(f"time-dependent inputs {unknown} are neither targets"
                       " nor forcings: GenCast cannot be rolled out on them")
    self._dims = {name: _time_first(self._forcings[name]).dims
                  for name in self.forcing_variables}
    self._conditioning_channels = int(stack_conditioning(
        self._inputs, self._forcings).shape[-1])

  @classmethod
  def from_example(cls, model: GenCastModel, example: xr.Dataset
                   ) -> "GenCastARDM":
    """GenCast on the grid, static inputs and forcings of an example in
    DeepMind's layout (batch, time, lat, lon, level; a `datetime`
    coordinate), split as data_utils.extract_inputs_targets_forcings does
    for one 12 h target."""
    if not isinstance(example, xr.Dataset):
      raise ValueError("a GenCast example must be an xarray Dataset, got"
                       f" {type(example).__name__}")
    gc = upstream()
    task = dataclasses.asdict(model.task_config)
    try:
      inputs, targets, forcings = (
          gc.data_utils.extract_inputs_targets_forcings(
              example, target_lead_times="12h", **task))
    except (KeyError, ValueError) as e:
      raise ValueError("the GenCast example does not fit the model's task"
                       f" (variables, levels, times): {e}") from e
    return cls(model, inputs, targets, forcings)

  @property
  def state_shape(self) -> tuple[int, ...]:
    return self.channel_layout.spatial_shape + (self.channel_layout.num_channels,)

  @property
  def history_length(self) -> int:
    return int(self._inputs.sizes["time"])

  @property
  def periodic(self) -> tuple[bool, ...]:
    return LAT_LON_PERIODIC

  @property
  def conditioning_channels(self) -> int:
    return self._conditioning_channels

  @functools.cached_property
  def timestep(self) -> np.timedelta64:
    """GenCast's step: the spacing of its input frames (12 h)."""
    times = np.asarray(self._inputs.coords["time"].values)
    if times.size > 1:
      return np.timedelta64(np.diff(times)[0], "ns")
    return np.timedelta64(pd.Timedelta(
        self.model.task_config.input_duration).to_timedelta64(), "ns")

  @functools.cached_property
  def layout(self) -> StateLayout:
    """GenCast's targets on its (lat, lon) grid, 12 h steps; targets that
    are not inputs (precipitation) may be absent from an initial state."""
    layout = self.channel_layout
    return StateLayout(
        variables=layout.variables,
        levels=tuple(tuple(float(x) for x in levels)
                     for levels in layout.levels),
        dims=("lat", "lon"),
        coords=(np.asarray(layout.lat), np.asarray(layout.lon)),
        periodic=LAT_LON_PERIODIC, timestep=self.timestep, sphere=True,
        missing_in_history=tuple(v for v in layout.variables
                                 if v not in self._inputs.data_vars))

  def context_for(self, times: np.ndarray) -> dict:
    """GenCast's forcings {name: [h + T, ...]} at the datetimes -h+1..T:
    the year and day progress features (era5_schema.progress_forcings, as
    DeepMind's data_utils computes them). Other forcings cannot be derived
    from the times and raise ValueError."""
    times = np.asarray(times)
    if not np.issubdtype(times.dtype, np.datetime64):
      raise ValueError("GenCast's forcings are computed from dates: the run's"
                       f" times must be datetime64, got {times.dtype}")
    other = sorted(set(self.forcing_variables) - set(PROGRESS_FORCINGS))
    if other:
      raise ValueError(f"GenCast's forcing(s) {other} cannot be computed from"
                       " the times; build the context from data"
                       " (GenCastARDM.trajectories)")
    progress = progress_forcings(times, np.asarray(self.channel_layout.lon))
    context = {}
    for name in self.forcing_variables:
      dims = [d for d in self._dims[name] if d != "batch"]
      data = progress[name]  # [T] or [T, lon]
      have = ["time"] + (["lon"] if data.ndim == 2 else [])
      if sorted(dims) != sorted(have):
        raise ValueError(f"GenCast's forcing {name!r} has dims {dims};"
                         f" expected {have}")
      context[name] = np.transpose(data, [have.index(d) for d in dims])
    return context

  @functools.cached_property
  def channel_std(self) -> np.ndarray:
    """[C] GenCast's climatological stds of the state channels."""
    return ChannelStats.create(self.channel_layout, self.model.stats,
                               self.model.task_config.input_variables).std

  def in_physical_units(self, regimes: Sequence[ObservationRegime]
                        ) -> list[ObservationRegime]:
    """Regimes whose noise_std is a fraction of each channel's std, with
    that noise in physical units (ObservationRegime.scaled)."""
    return [r.scaled(self.channel_std) for r in regimes]

  @functools.cached_property
  def fingerprint(self) -> str:
    digest = hashlib.sha256(gencast_fingerprint(self.model).encode())
    digest.update(repr((self.channel_layout.channel_names,
                        self.channel_layout.spatial_shape)).encode())
    return "gencast-" + digest.hexdigest()[:16]

  # --- arrays <-> GenCast's Datasets -----------------------------------------

  def _channels(self, name: str) -> slice:
    start = 0
    for variable, levels in zip(self.channel_layout.variables, self.channel_layout.levels):
      size = len(levels) or 1
      if variable == name:
        return slice(start, start + size)
      start += size
    raise KeyError(name)

  def _state_variable(self, name: str, frames: jax.Array):
    """(dims, data) of an input variable from states [T, lat, lon, C], in
    the dim order of the example's inputs."""
    data = frames[..., self._channels(name)][None]  # [1, T, lat, lon, L]
    dims = ("batch", "time", "lat", "lon", "level")
    if not self.channel_layout.levels[self.channel_layout.variables.index(name)]:
      data, dims = data[..., 0], dims[:-1]
    order = self._inputs[name].dims
    return order, jnp.transpose(data, [dims.index(d) for d in order])

  def _dataset(self, like: xr.Dataset, data_vars: dict) -> xr.Dataset:
    xj = upstream().xarray_jax
    return xj.Dataset(data_vars, coords=like.coords)

  def datasets(self, history: jax.Array, context: dict
               ) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """GenCast's (inputs, targets_template, forcings) of one step (traceable)."""
    h = self.history_length
    data_vars = {}
    for name in self._inputs.data_vars:
      if name not in self._dynamic:
        data_vars[name] = self._inputs[name]
      elif name in self.channel_layout.variables:
        data_vars[name] = self._state_variable(name, history)
      else:
        data_vars[name] = (self._dims[name], context[name][:h][None])
    forcings = {name: (self._dims[name], context[name][h:][None])
                for name in self.forcing_variables}
    return (self._dataset(self._inputs, data_vars), self._template,
            self._dataset(self._forcings, forcings))

  def check_history(self, history) -> None:
    """NaN marks undefined data (sea surface temperature over land,
    precipitation at the input times, which is not an input); inf is an
    error."""
    if bool(jnp.any(jnp.isinf(history))):
      raise ValueError("initial history contains inf")

  def step(self, history, key, preview=None, controller=None, remat=False,
           context=None, guidance=None):
    expected = (self.history_length,) + self.state_shape
    if history.shape != expected:
      raise ValueError(f"history must have shape {expected} (history_length,"
                       f" lat, lon, channels), got {history.shape}")
    if context is None and self.forcing_variables:
      raise ValueError("GenCast's step needs its forcings as context"
                       " ({name: [h + 1, ...]}, see GenCastARDM.trajectories)")
    inputs, template, forcings = self.datasets(history, context)
    apply = None if controller is None else (lambda _, x: controller(x))
    transform = forward_transform(self.model, apply, remat=remat,
                                  guidance=guidance)
    (prediction, energy), _ = transform.apply(
        self.model.params, {}, key, inputs, template, forcings, None, preview)
    return jnp.asarray(self.channel_layout.stack(prediction))[0], energy

  # --- examples -> trajectories -----------------------------------------------

  def trajectories(self, inputs: xr.Dataset, targets: xr.Dataset,
                   forcings: xr.Dataset) -> tuple[np.ndarray, dict]:
    """GenCast examples -> (states [N, h + L, lat, lon, C], context).

    inputs, targets, forcings: N examples (a batch dim) of h input and L
    target times. context: {forcing: [N, h + L, ...]} over the same times.
    Targets that are not inputs are NaN at the input times.
    """
    check_call(inputs, targets.isel(time=[0]), forcings.isel(time=[0]),
               self.model.task_config, self.model.grid_shape)
    h = self.history_length
    past = {}
    for name in self.channel_layout.variables:
      if name in inputs.data_vars:
        past[name] = inputs[name]
      else:
        past[name] = (targets[name].isel(time=[0] * h) * np.nan
                      ).assign_coords(time=inputs.coords["time"].values)
    leading = ("batch", "time")
    states = np.concatenate(
        [np.asarray(self.channel_layout.stack(xr.Dataset(past), leading), np.float32),
         np.asarray(self.channel_layout.stack(targets, leading), np.float32)], axis=1)
    context = {}
    for name in self.forcing_variables:
      future = _time_first(forcings[name])
      if name in inputs.data_vars:
        before = _time_first(inputs[name]).values
      else:
        before = np.full((future.sizes["batch"], h) + future.shape[2:], np.nan)
      context[name] = np.concatenate([before, future.values],
                                     axis=1).astype(np.float32)
    return states, context
