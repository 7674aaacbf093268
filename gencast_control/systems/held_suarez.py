"""Held-Suarez atmosphere on the sphere with dinosaur, as a WeatherBench2 store.

The forced dry primitive equations of Held & Suarez (1994, "A proposal for
the intercomparison of the dynamical cores of atmospheric general circulation
models", BAMS 75(10)): Newtonian relaxation of temperature towards a
zonally symmetric radiative equilibrium T_eq(phi, sigma) with rate k_T, and
Rayleigh friction k_v (sigma) in the boundary layer sigma > 0.7,

    dT/dt = ... - k_T (phi, sigma) (T - T_eq),   dv/dt = ... - k_v(sigma) v,

solved by Google's spectral dynamical core `dinosaur` (the one inside
NeuralGCM; the optional extra `sphere`) on sigma levels with an IMEX RK
scheme and an exponential spectral filter. The default is T21 on the
equiangular 64 x 32 grid of WeatherBench2's 5.625 deg stores (latitudes
-87.1875 .. 87.1875, no poles) with 8 equidistant sigma levels and a 60 min
step (6.5 s per simulated month on 2 CPU cores).

`simulate_store` runs one member per split (train, validation, test), each
from its own random surface-pressure perturbation of an isothermal rest
atmosphere and its own spin-up (>= 200 days, discarded), and writes them one
after the other on a uniform time axis: the split periods of
`HeldSuarezDataConfig` are exactly the members, so no trajectory window mixes
two members and the test climate is independent of the training one.
Variables are interpolated linearly in sigma to pressure levels and named as
in WeatherBench2 (temperature, u/v_component_of_wind, geopotential on
`level` in hPa; surface_pressure in Pa).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.core.checkpoint import atomic_write
from gencast_control.data.era5_trajectories import ERA5DataConfig

LEVEL_VARIABLES = ("temperature", "u_component_of_wind",
                   "v_component_of_wind", "geopotential")
SURFACE_VARIABLES = ("surface_pressure",)
UNITS = {"temperature": "K", "u_component_of_wind": "m s-1",
         "v_component_of_wind": "m s-1", "geopotential": "m2 s-2",
         "surface_pressure": "Pa"}
INSTALL_HINT = ("the Held-Suarez system needs Google's dinosaur dynamical"
                " core: pip install -e \".[sphere]\"")


def import_dinosaur():
  """The dinosaur package, or ImportError with the install command."""
  try:
    from dinosaur import (coordinate_systems, held_suarez,
                          primitive_equations, primitive_equations_states,
                          scales, sigma_coordinates, spherical_harmonic,
                          time_integration, vertical_interpolation,
                          xarray_utils)
  except ImportError as e:
    raise ImportError(f"{INSTALL_HINT} ({e})") from e
  return dict(coordinate_systems=coordinate_systems, held_suarez=held_suarez,
              primitive_equations=primitive_equations,
              states=primitive_equations_states, scales=scales,
              sigma_coordinates=sigma_coordinates,
              spherical_harmonic=spherical_harmonic,
              time_integration=time_integration,
              vertical_interpolation=vertical_interpolation,
              xarray_utils=xarray_utils)


@dataclasses.dataclass(frozen=True)
class HeldSuarezConfig:
  """The simulation.

  Attributes:
    max_wavenumber: triangular truncation T (21: T21).
    gaussian_nodes: nodes between equator and pole; the grid has
      4 n longitudes and 2 n latitudes (16: 64 x 32).
    layers: equidistant sigma levels.
    dt_minutes: time step (60 is stable at T21).
    spinup_days: discarded spin-up of each member (Held & Suarez use 200).
    store_hours: interval of the stored states.
    levels: output pressure levels [hPa], ascending.
    split_days: stored days of the train, validation and test members.
    start: first stored time of the train member (a nominal calendar).
    surface_pressure_perturbation: amplitude [Pa] of the random initial
      perturbation that makes the members independent.
    seed: PRNG seed; member k uses fold_in(seed, k).
  """
  max_wavenumber: int = 21
  gaussian_nodes: int = 16
  layers: int = 8
  dt_minutes: float = 60.0
  spinup_days: float = 200.0
  store_hours: int = 12
  levels: tuple[int, ...] = (250, 500, 850)
  split_days: tuple[float, float, float] = (720.0, 120.0, 180.0)
  start: str = "2000-01-01"
  surface_pressure_perturbation: float = 5e3
  seed: int = 0

  def __post_init__(self):
    if len(self.split_days) != 3 or min(self.split_days) <= 0:
      raise ValueError("split_days must be three positive day counts (train,"
                       f" validation, test), got {self.split_days}")
    if list(self.levels) != sorted(set(self.levels)) or not self.levels:
      raise ValueError(f"levels must be ascending hPa values, got"
                       f" {self.levels}")
    inner = self.store_hours * 60 / self.dt_minutes
    if self.dt_minutes <= 0 or abs(inner - round(inner)) > 1e-9:
      raise ValueError(f"store_hours ({self.store_hours} h) must be a"
                       f" multiple of dt_minutes ({self.dt_minutes} min)")
    if self.spinup_days < 0:
      raise ValueError(f"spinup_days must be >= 0, got {self.spinup_days}")

  @property
  def inner_steps(self) -> int:
    return int(round(self.store_hours * 60 / self.dt_minutes))

  def periods(self) -> dict[str, tuple[str, str]]:
    """{split: (first, last) day}, inclusive: exactly one member each."""
    out, first = {}, pd.Timestamp(self.start)
    for split, days in zip(("train", "validation", "test"), self.split_days):
      end = first + pd.Timedelta(days=days)
      out[split] = (f"{first:%Y-%m-%d}",
                    f"{end - pd.Timedelta(days=1):%Y-%m-%d}")
      first = end
    return out


class HeldSuarezModel:
  """dinosaur's Held-Suarez model: states, steps and WeatherBench2 fields."""

  def __init__(self, config: HeldSuarezConfig):
    d = import_dinosaur()
    self.config = config
    units = d["scales"].units
    self._d, self._units = d, units
    self.grid = d["spherical_harmonic"].Grid.construct(
        max_wavenumber=config.max_wavenumber,
        gaussian_nodes=config.gaussian_nodes, latitude_spacing="equiangular")
    self.coords = d["coordinate_systems"].CoordinateSystem(
        horizontal=self.grid,
        vertical=d["sigma_coordinates"].SigmaCoordinates.equidistant(
            config.layers))
    self.specs = d["primitive_equations"].PrimitiveEquationsSpecs.from_si()
    self._initial_state_fn, aux = d["states"].isothermal_rest_atmosphere(
        self.coords, self.specs, p0=1e5 * units.pascal,
        p1=config.surface_pressure_perturbation * units.pascal)
    self.reference_temperature = aux[d["xarray_utils"].REF_TEMP_KEY]
    self.nodal_orography = aux[d["xarray_utils"].OROGRAPHY]
    orography = d["primitive_equations"].truncated_modal_orography(
        self.nodal_orography, self.coords)
    equations = d["primitive_equations"].PrimitiveEquations(
        self.reference_temperature, orography, self.coords, self.specs)
    forcing = d["held_suarez"].HeldSuarezForcingSigma(
        coords=self.coords, physics_specs=self.specs,
        reference_temperature=self.reference_temperature,
        p0=1e5 * units.pascal)
    ti = d["time_integration"]
    dt = self.specs.nondimensionalize(config.dt_minutes * units.minute)
    step = ti.imex_rk_sil3(ti.compose_equations([equations, forcing]), dt)
    self._step = ti.step_with_filters(step, [ti.exponential_step_filter(
        self.grid, dt, tau=0.0087504, order=1.5, cutoff=0.8)])
    self.pressure = d["vertical_interpolation"].PressureCoordinates(
        np.asarray(config.levels, np.float64) * 100.0)
    lon, lat = self.grid.nodal_axes
    self.latitude = np.degrees(np.arcsin(lat))  # ascending
    self.longitude = np.degrees(lon)

  def initial_state(self, key: jax.Array):
    """Isothermal rest atmosphere with a random surface-pressure bump."""
    return self._initial_state_fn(rng_key=key)

  @functools.partial(jax.jit, static_argnums=0)
  def advance(self, state, num_steps: int | jax.Array):
    """The state num_steps model steps (dt_minutes each) later (num_steps
    is traced: one compiled program for every length)."""
    return jax.lax.fori_loop(0, num_steps, lambda _, s: self._step(s), state)

  @functools.partial(jax.jit, static_argnums=0)
  def fields(self, state) -> dict[str, jax.Array]:
    """WeatherBench2 variables of one state: [level, lat, lon] and [lat, lon].

    Physical units (K, m/s, m^2/s^2, Pa); linear interpolation in sigma to
    the pressure levels (constant extrapolation outside the model levels).
    """
    d, units, grid = self._d, self._units, self.grid
    dim = self.specs.dimensionalize
    temperature = (grid.to_nodal(state.temperature_variation)
                   + self.reference_temperature[:, None, None])
    u, v = d["spherical_harmonic"].vor_div_to_uv_nodal(
        grid, state.vorticity, state.divergence)
    geopotential = d["primitive_equations"].get_geopotential_on_sigma(
        temperature, nodal_orography=self.nodal_orography,
        sigma=self.coords.vertical,
        gravity_acceleration=self.specs.gravity_acceleration,
        ideal_gas_constant=self.specs.ideal_gas_constant)
    ps = dim(jnp.exp(grid.to_nodal(state.log_surface_pressure)),
             units.pascal).magnitude  # [1, lon, lat]
    sigma_fields = {
        "temperature": dim(temperature, units.degK).magnitude,
        "u_component_of_wind": dim(u, units.meter / units.second).magnitude,
        "v_component_of_wind": dim(v, units.meter / units.second).magnitude,
        "geopotential": dim(geopotential,
                            units.meter ** 2 / units.second ** 2).magnitude,
    }
    on_pressure = d["vertical_interpolation"].interp_sigma_to_pressure(
        sigma_fields, self.pressure, self.coords.vertical, ps)
    to_lat_lon = lambda x: jnp.swapaxes(x, -1, -2)  # [.., lon, lat] -> lat, lon
    out = {k: to_lat_lon(v) for k, v in on_pressure.items()}
    out["surface_pressure"] = to_lat_lon(ps[0])
    return out

  def channels(self, state, channels: Sequence[str]) -> jax.Array:
    """[lat, lon, C] physical values of "name@level" / "name" channels."""
    fields = self.fields(state)
    levels = list(self.config.levels)
    out = []
    for channel in channels:
      name, _, level = channel.partition("@")
      if name not in fields:
        raise ValueError(f"unknown Held-Suarez variable {name!r}; known:"
                         f" {sorted(fields)}")
      if level:
        if int(level) not in levels:
          raise ValueError(f"level {level} of {channel!r} is not simulated;"
                           f" levels: {levels}")
        out.append(fields[name][levels.index(int(level))])
      else:
        out.append(fields[name])
    return jnp.stack(out, axis=-1)

  # The LETKF updates grid columns: the nodal prognostic fields per column,
  # with the wind as (u, v) as in Miyoshi's SPEEDY-LETKF, not the nonlocal
  # vorticity and divergence.
  def to_columns(self, state) -> jax.Array:
    """[lat, lon, F] nodal u, v, temperature variation (per sigma level) and
    log surface pressure, in dinosaur's nondimensional units."""
    g = self.grid
    u, v = self._d["spherical_harmonic"].vor_div_to_uv_nodal(
        g, state.vorticity, state.divergence)
    stacked = jnp.concatenate([u, v, g.to_nodal(state.temperature_variation),
                               g.to_nodal(state.log_surface_pressure)])
    return jnp.transpose(stacked, (2, 1, 0))

  def add_increment(self, state, increment: jax.Array):
    """The state plus a nodal increment in `to_columns`'s layout; only the
    increment passes through the spectral transforms."""
    g, n = self.grid, self.config.layers
    nodal = jnp.transpose(increment, (2, 1, 0))
    d_vorticity, d_divergence = self._d[
        "spherical_harmonic"].uv_nodal_to_vor_div_modal(
            g, nodal[:n], nodal[n:2 * n])
    return type(state)(
        vorticity=state.vorticity + d_vorticity,
        divergence=state.divergence + d_divergence,
        temperature_variation=(state.temperature_variation
                               + g.to_modal(nodal[2 * n:3 * n])),
        log_surface_pressure=(state.log_surface_pressure
                              + g.to_modal(nodal[3 * n:])),
        tracers=state.tracers, sim_time=state.sim_time)


STATE_FIELDS = ("vorticity", "divergence", "temperature_variation",
                "log_surface_pressure")


def stack_states(states: Sequence) -> dict[str, np.ndarray]:
  """{field: [N, ...]} modal arrays of dinosaur states (for np.savez)."""
  return {f: np.stack([np.asarray(getattr(s, f)) for s in states])
          for f in STATE_FIELDS}


def unstack_states(arrays, model: HeldSuarezModel, index=None):
  """One batched dinosaur state (leading axis) from `stack_states` arrays."""
  pick = (lambda a: a) if index is None else (lambda a: a[np.asarray(index)])
  state = model._d["primitive_equations"].State
  return state(**{f: jnp.asarray(pick(arrays[f])) for f in STATE_FIELDS})


def _member_fields(model: HeldSuarezModel, key, spinup_steps: int,
                   num_states: int, keep_states: bool):
  """Spins up one member; its stored states as numpy fields, and (if
  keep_states) the model states themselves."""
  state = model.advance(model.initial_state(key), spinup_steps)
  inner = model.config.inner_steps
  out = {name: [] for name in LEVEL_VARIABLES + SURFACE_VARIABLES}
  states = []
  for _ in range(num_states):
    for name, value in model.fields(state).items():
      out[name].append(np.asarray(value, np.float32))
    if keep_states:
      states.append(state)
    state = model.advance(state, inner)
  return {name: np.stack(values) for name, values in out.items()}, states


def simulate_dataset(config: HeldSuarezConfig
                     ) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
  """The three members as one WeatherBench2-shaped dataset (in memory), and
  the validation member's model states (`stack_states`; the climatology a
  cold-started perfect-model filter draws from)."""
  model = HeldSuarezModel(config)
  key = jax.random.PRNGKey(config.seed)
  spinup = int(round(config.spinup_days * 24 * 60 / config.dt_minutes))
  per_day = 24 / config.store_hours
  members = [
      _member_fields(model, jax.random.fold_in(key, k), spinup,
                     int(round(days * per_day)), keep_states=k == 1)
      for k, days in enumerate(config.split_days)]
  data = {name: np.concatenate([m[0][name] for m in members])
          for name in members[0][0]}
  validation_states = stack_states(members[1][1])
  times = pd.date_range(config.start, periods=data["surface_pressure"].shape[0],
                        freq=f"{config.store_hours}h")
  variables = {}
  for name, values in data.items():
    dims = (("time", "level", "latitude", "longitude") if values.ndim == 4
            else ("time", "latitude", "longitude"))
    variables[name] = (dims, values, {"units": UNITS[name]})
  ds = xr.Dataset(
      variables,
      coords={"time": times, "level": np.asarray(config.levels, np.int64),
              "latitude": model.latitude.astype(np.float64),
              "longitude": model.longitude.astype(np.float64)},
      attrs={
          "title": "Held-Suarez (1994) idealised dry atmosphere, simulated",
          "source": f"dinosaur T{config.max_wavenumber}, {config.layers}"
                    f" sigma levels, dt {config.dt_minutes:g} min",
          "members": "one independent run per split; periods (inclusive): "
                     + ", ".join(f"{s} {a}..{b}"
                                 for s, (a, b) in config.periods().items()),
          "spinup_days": config.spinup_days,
          "note": "a nominal calendar: Held-Suarez has no seasons or days",
      })
  ds["level"].attrs["units"] = "hPa"
  return ds, validation_states


def states_path(store) -> Path:
  """Where `simulate_store` puts the validation member's model states."""
  store = Path(store)
  return store.with_name(store.name.removesuffix(".zarr") + "_states.npz")


def simulate_store(config: HeldSuarezConfig, path) -> Path:
  """Simulates and writes the zarr store at `path` and its validation
  member's model states at `states_path(path)`, each atomically."""
  path = Path(path)
  ds, states = simulate_dataset(config)
  bad = [n for n, v in ds.data_vars.items()
         if not np.isfinite(v.values).all()]
  if bad:
    raise ValueError(f"the Held-Suarez run blew up (NaN/inf in {bad});"
                             " lower dt_minutes")
  tmp = path.with_name(path.name + ".partial")
  shutil.rmtree(tmp, ignore_errors=True)
  ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
  shutil.rmtree(path, ignore_errors=True)
  tmp.rename(path)
  atomic_write(states_path(path), lambda f: np.savez(f, **states))
  return path


@dataclasses.dataclass(frozen=True)
class LETKFOptions:
  """The perfect-model LETKF's settings (`baselines.perfect_model`).

  Defaults chosen on one validation trajectory of the stations_10pct
  network (time-mean RMSE 0.30 in standardised units; 0.37 with 8 members
  at 500 km, 0.43 at 800 km, 0.64 at 3000 km, 0.37 with 16 at 1200 km).

  Attributes:
    ensemble_size: members; 16, twice the ARDM ensembles', because an
      8-member LETKF's rank is too low for this state (its spread collapses).
    radius_km: Gaspari-Cohn half-width c (support 2c) of the great-circle
      localisation.
    inflation: multiplicative prior inflation lambda.
  """
  ensemble_size: int = 16
  radius_km: float = 800.0
  inflation: float = 1.2

  def __post_init__(self):
    if self.ensemble_size < 2 or self.radius_km <= 0 or self.inflation < 1:
      raise ValueError("LETKFOptions needs ensemble_size >= 2, radius_km > 0"
                       f" and inflation >= 1, got {self}")


@dataclasses.dataclass(frozen=True)
class HeldSuarezDataConfig(ERA5DataConfig):
  """The ERA5 pilot's data step on a simulated Held-Suarez store.

  `store` empty means "<simulate --out>/heldsuarez.zarr", written by
  `prepare`; the split periods are the members' (`HeldSuarezConfig.periods`)
  whatever is given. `reference` sets the pilot's perfect-model LETKF.
  """
  store: str = ""
  simulation: HeldSuarezConfig = HeldSuarezConfig()
  reference: LETKFOptions = LETKFOptions()
  timeout_s: float = 5.0

  def __post_init__(self):
    periods = self.simulation.periods()
    for split in ("train", "validation", "test"):
      object.__setattr__(self, f"{split}_period", periods[split])
    super().__post_init__()

  def prepare(self, out_dir) -> ERA5DataConfig:
    """Simulates the store in out_dir (unless `store` names one) and returns
    the plain ERA5 data config that reads it."""
    store = self.store
    if not store:
      store = str(simulate_store(self.simulation,
                                 Path(out_dir) / "heldsuarez.zarr"))
    fields = {f.name: getattr(self, f.name)
              for f in dataclasses.fields(ERA5DataConfig)}
    return ERA5DataConfig(**dict(fields, store=store))

