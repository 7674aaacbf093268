"""Classical ensemble DA behind one filter contract.

A filter cycles M members of a forecast model over the observation times
1..T: every member is forecast one step, then analysed wherever something
is observed. The model is the solver that made the truth (the `model_step`
of the config's system, `systems.registry`: a perfect model), x_i <-
model_step(x_i), or, for the "_ardm" methods, the frozen ARDM the
controller steers: x_i <- one unguided sample of p_theta(. | x_i's history)
with member i's key of that step (`assimilation.ensemble_step`'s), so that
without observations the members are exactly the unguided forecast. The
same-model filters say how much of a gap to the perfect-model ones is the
learned model's and how much the assimilation's. Methods (`FILTERS`):

* "enkf"   the stochastic EnKF with covariance localisation (`enkf`), kept
           as the project's untuned reference.
* "letkf"  the local ensemble transform Kalman filter (`letkf`; Hunt,
           Kostelich & Szunyogh 2007) with R-localisation on the periodic
           grid: column g sees observation p with error variance
           sigma_p^2 / GC(d_gp / c), d_gp the periodic grid distance (in
           grid points) between the column and the observed point, c the
           localisation radius; prior multiplicative inflation lambda.
* "letks"  the fixed-lag ensemble transform smoother with lag L: the local
           transforms T_g of the analysis at time t (`letkf.apply_weights`)
           also update the members' states at t-L..t-1 (without the prior
           inflation, which is x_t's: T_g / sqrt(lambda)), so the estimate of
           x_s has seen y_1..y_min(s+L, T) (Evensen & van Leeuwen 2000, the
           EnKS; Kalnay & Yang 2010, its LETKF form). With L = H - 1 it sees
           what the controller's preview of H frames shows it.
* "letkf_ardm", "letks_ardm"  the same with the ARDM as the model
           (ARDMLETKFOptions.model: a FrozenARDM on a periodic grid, without
           per-step context); the analysis also updates the member's
           history (its last state is x_t).

The contract: `filter_program(method, history, observations, num_steps,
key, ensemble_size, **options)` checks its inputs and returns (jitted
program, arguments); program(*arguments) is the ensemble [M, T+1, *spatial,
C], like `assimilation.ensemble_program`. Member m starts at its last
history state plus initial_std * N(0, I) drawn with fold_in(key, m): from a
shared true state an unperturbed ensemble has no spread and never updates.
The numbers of the options (radius, inflation, initial_std) are traced
arguments; what shapes the program (the solver, the lag, the observation
slots) is static.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.baselines import enkf, letkf
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.assimilation import member_histories, member_keys
from gencast_control.core.config import options_from_kwargs
from gencast_control.core.observations import Observations
from gencast_control.systems.registry import system_for_config

# Option fields that shape the compiled program; the others are traced.
STATIC_FIELDS = ("pde_config", "ks_config", "lag", "obs_capacity", "model")


@dataclasses.dataclass(frozen=True)
class LETKFOptions:
  """Settings of the LETKF on a periodic grid (the LETKS: `LETKSOptions`).

  Attributes:
    pde_config: the true solver used as the model (as `enkf.EnKFOptions`).
    localization_radius: Gaspari-Cohn half-width c in grid points.
    inflation: prior multiplicative inflation lambda >= 1 of the forecast
      covariance (anomalies x sqrt(lambda); the EnKF's `inflation`
      multiplies the anomalies).
    initial_std: std of the members' initial perturbation.
    lag: L, the smoother's lag in steps (0: the filter).
    obs_capacity: observation slots per analysis (0: as many as the most
      observed time has; `filter_program` sets it).
  """
  pde_config: Any = None
  localization_radius: float = 8.0
  inflation: float = 1.05
  initial_std: float = 0.1
  lag: int = 0
  obs_capacity: int = 0

  # The smallest lag: 0 for a filter, 1 for a smoother.
  min_lag: ClassVar[int] = 0
  # Where its method's name is spelled in errors.
  method: ClassVar[str] = "letkf"

  def __post_init__(self):
    self.check_model()
    enkf.check_filter_numbers(self)
    lag = self.lag
    if isinstance(lag, bool) or int(lag) != lag or lag < 0:
      raise ValueError(f"lag must be an integer >= 0, got {lag!r}")
    if lag < self.min_lag:
      raise ValueError(f"{self.method} needs lag >= {self.min_lag} (lag 0 is"
                       f" the filter), got {lag}")

  def check_model(self) -> None:
    enkf.require_solver(self.pde_config, type(self).__name__)

  @property
  def state_shape(self) -> tuple[int, ...]:
    """[*spatial, C] of the model's state."""
    return enkf.solver_state_shape(self)


@dataclasses.dataclass(frozen=True)
class LETKSOptions(LETKFOptions):
  """The fixed-lag LETKS: LETKFOptions with a lag L >= 1 (default 3, the
  KS controller's preview of H = 4 frames)."""
  lag: int = 3
  min_lag: ClassVar[int] = 1
  method: ClassVar[str] = "letks"


@dataclasses.dataclass(frozen=True)
class ARDMLETKFOptions(LETKFOptions):
  """LETKFOptions with the frozen ARDM as the model ("letkf_ardm").

  model: a FrozenARDM (core.ardm) on a periodic grid whose steps need no
    per-step context (the project's grid ARDMs); pde_config is unused.
  """
  model: Any = None
  method: ClassVar[str] = "letkf_ardm"

  def check_model(self) -> None:
    if not isinstance(self.model, FrozenARDM):
      raise ValueError(f"{self.method} needs model=<the frozen ARDM>, got"
                       f" {type(self.model).__name__}")
    if not all(self.model.periodic):
      raise ValueError(f"{self.method} localises on a periodic grid; this"
                       f" model's axes are periodic={self.model.periodic}")

  @property
  def state_shape(self) -> tuple[int, ...]:
    return tuple(self.model.state_shape)


@dataclasses.dataclass(frozen=True)
class ARDMLETKSOptions(ARDMLETKFOptions):
  """The fixed-lag LETKS with the ARDM as the model ("letks_ardm")."""
  lag: int = 3
  min_lag: ClassVar[int] = 1
  method: ClassVar[str] = "letks_ardm"


def forecast_model(options: LETKFOptions, keys) -> Callable:
  """(rows [h, M, *spatial, C], t) -> the members' forecasts of x_t: the
  true solver from x_{t-1} (rows[-1]), or one unguided ARDM sample per
  member from its history, with fold_in(keys[m], t - 1) as the unguided
  ensemble's step t - 1 (`assimilation.forecast_step`)."""
  if not isinstance(options, ARDMLETKFOptions):
    step = system_for_config(options.pde_config).model_step
    return lambda rows, t: step(rows[-1], options.pde_config)
  ardm = options.model

  def sample(history, key, t):
    return ardm.step(history, jax.random.fold_in(key, t - 1))[0]

  return lambda rows, t: jax.vmap(sample, (1, 0, None))(rows, keys, t)


def letkf_rollout(histories, observations: Observations, num_steps: int,
                  keys, options: LETKFOptions, localization_radius, inflation,
                  initial_std) -> jax.Array:
  """Ensemble [M, T+1, *spatial, C] of the LETKF / LETKS (traceable).

  histories: [M, h, *spatial, C]; keys: [M, 2]. The trajectory
  [h - 1 + T+1, M, ...], the members' earlier history then x_0..x_T, is
  carried through the scan: step t forecasts x_t from the h rows before
  it (`forecast_model`), and the analysis transforms of time t update
  x_max(t - L, 0)..x_t (rows past t are still zero, which every transform
  keeps zero).
  """
  m, h = histories.shape[:2]
  shape = histories.shape[2:]
  spatial, channels = tuple(shape[:-1]), shape[-1]
  columns = int(np.prod(spatial))
  eps = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
  members = histories[:, -1] + initial_std * eps
  points = jnp.asarray(enkf.grid_coordinates(spatial, 1))  # [G, D]
  forecast = forecast_model(options, keys)
  capacity = options.obs_capacity
  window = min(options.lag, num_steps) + 1

  def weights(x, t):  # (the local transforms [G, M, M] of time t, observed)
    mask = observations.mask[t].reshape(-1)
    index, used = enkf.observation_slots(mask, capacity)
    noise = jnp.where(used > 0,
                      observations.entry_std(t).reshape(-1)[index], 1.0)
    distance = enkf.periodic_grid_distance(
        points[:, None, :], points[index // channels][None], spatial)
    localization = enkf.gaspari_cohn(distance, localization_radius) * used
    w = letkf.letkf_weights(x.reshape(m, -1)[:, index],
                            observations.values[t].reshape(-1)[index], noise,
                            localization, inflation)
    observed = jnp.any(mask > 0)
    return jnp.where(observed, w, jnp.eye(m)), observed

  def cycle(trajectory, t):  # x_t is row t + h - 1
    x = forecast(jax.lax.dynamic_slice_in_dim(trajectory, t - 1, h), t)
    trajectory = trajectory.at[t + h - 1].set(x)
    transforms, observed = weights(x, t)
    # T carries the prior inflation of x_t (sqrt(lambda), letkf_weights);
    # the earlier rows are not inflated: they get T / sqrt(lambda).
    lagged = jnp.where(observed, transforms / jnp.sqrt(inflation), transforms)
    first = jnp.clip(t - window + 1, 0, num_steps + 1 - window)
    rows = jax.lax.dynamic_slice_in_dim(trajectory, first + h - 1, window)
    times = first + jnp.arange(window)
    analysed = jax.vmap(lambda r, s: letkf.apply_weights(
        r.reshape(m, columns, channels),
        jnp.where(s == t, transforms, lagged)))(rows, times)
    return jax.lax.dynamic_update_slice_in_dim(
        trajectory, analysed.reshape(rows.shape), first + h - 1, 0), None

  trajectory = jnp.zeros((h + num_steps,) + members.shape, members.dtype)
  trajectory = trajectory.at[:h].set(jnp.moveaxis(histories, 1, 0))
  trajectory, _ = jax.lax.scan(cycle, trajectory.at[h - 1].set(members),
                               jnp.arange(1, num_steps + 1))
  return jnp.moveaxis(trajectory[h - 1:], 1, 0)


@dataclasses.dataclass(frozen=True)
class Filter:
  """A classical method: its options class and its rollout
  (histories, observations, num_steps, keys, static options, **numbers)
  -> ensemble [M, T+1, *spatial, C]."""
  options: type
  rollout: Callable[..., jax.Array]


FILTERS = {
    "enkf": Filter(enkf.EnKFOptions, enkf.enkf_rollout),
    "letkf": Filter(LETKFOptions, letkf_rollout),
    "letks": Filter(LETKSOptions, letkf_rollout),
    "letkf_ardm": Filter(ARDMLETKFOptions, letkf_rollout),
    "letks_ardm": Filter(ARDMLETKSOptions, letkf_rollout),
}
# The methods whose model is the ARDM (ARDMLETKFOptions.model).
ARDM_METHODS = ("letkf_ardm", "letks_ardm")
METHODS = tuple(FILTERS)


def parse_options(method: str, options: dict):
  """The method's options object from keyword options (one-line errors)."""
  if method not in FILTERS:
    raise ValueError(f"unknown filter {method!r}; choose one of {METHODS}")
  return options_from_kwargs(FILTERS[method].options, options,
                             f"method {method!r}")


def _numbers(options) -> dict:
  return {f.name: getattr(options, f.name)
          for f in dataclasses.fields(options) if f.name not in STATIC_FIELDS}


@functools.lru_cache(maxsize=32)
def _compiled(method: str, num_steps: int, static_options):
  rollout = FILTERS[method].rollout
  return jax.jit(lambda histories, observations, keys, numbers: rollout(
      histories, observations, num_steps, keys, static_options, **numbers))


def _state_shape(options) -> tuple[int, ...]:
  if isinstance(options, LETKFOptions):
    return options.state_shape
  return enkf.solver_state_shape(options)


def _check_ardm_history(history, options: ARDMLETKFOptions) -> None:
  """One history [h, *spatial, C] against the ARDM of the options."""
  model = options.model
  expected = (model.history_length,) + tuple(model.state_shape)
  if tuple(history.shape) != expected:
    raise ValueError(f"{options.method} needs a history of shape {expected}"
                     f" (the ARDM's h and state), got {tuple(history.shape)}")


def filter_program(method: str, history, observations: Observations,
                   num_steps: int, key: jax.Array, ensemble_size: int,
                   **method_options):
  """(jitted program, its arguments) of `assimilate_filter`, inputs checked."""
  options = parse_options(method, method_options)
  if isinstance(ensemble_size, bool) or int(ensemble_size) != ensemble_size:
    raise ValueError(f"ensemble_size must be an integer, got"
                     f" {ensemble_size!r}")
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if not isinstance(observations, Observations):
    raise ValueError("observations must be an Observations stream, got"
                     f" {type(observations).__name__}")
  history = jnp.asarray(history, jnp.float32)
  if not bool(jnp.all(jnp.isfinite(history))):
    raise ValueError("initial history contains NaN or inf")
  state_ndim = len(_state_shape(options))
  single = history[0] if history.ndim == state_ndim + 2 else history
  if isinstance(options, ARDMLETKFOptions):
    _check_ardm_history(single, options)
  else:
    enkf.check_enkf_inputs(single, options, method)
  if ensemble_size < 2:
    raise ValueError(f"{method} needs ensemble_size >= 2, got"
                     f" {ensemble_size}")
  observations.check_compatible(tuple(single.shape[1:]), num_steps)
  needed = enkf.observation_capacity(observations)
  if 0 < options.obs_capacity < needed:
    raise ValueError(f"obs_capacity={options.obs_capacity} is below the"
                     f" {needed} entries observed at one time")
  static = dataclasses.replace(
      options, localization_radius=1.0, inflation=1.0, initial_std=0.0,
      obs_capacity=options.obs_capacity or needed)
  histories = member_histories(history, ensemble_size, tuple(single.shape))
  return _compiled(method, num_steps, static), (
      histories, observations, member_keys(key, ensemble_size),
      _numbers(options))


def assimilate_filter(method: str, history, observations: Observations,
                      num_steps: int, key: jax.Array, ensemble_size: int,
                      **method_options) -> jax.Array:
  """Ensemble [M, T+1, *spatial, C] of a classical filter or smoother.

  Args:
    method: one of METHODS.
    history: [h, *spatial, C] on the model's grid (the true solver's; the
      ARDM's state and h for the "_ardm" methods), shared by the members
      (then perturbed by initial_std), or one per member [M, h, *spatial,
      C] (a cold start).
    observations: the stream over times 0..T.
    num_steps: T.
    key: PRNG key; member m's key is fold_in(key, m): its perturbation,
      and its ARDM samples as in the unguided ensemble.
    ensemble_size: M >= 2.
    **method_options: the fields of the method's options class
      (enkf.EnKFOptions, LETKFOptions, LETKSOptions, ARDMLETKFOptions,
      ARDMLETKSOptions).
  """
  program, arguments = filter_program(method, history, observations,
                                      num_steps, key, ensemble_size,
                                      **method_options)
  return program(*arguments)
