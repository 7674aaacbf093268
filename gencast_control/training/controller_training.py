"""Training the controller by entropy-regularised stochastic optimal control.

Srivastava et al. 2025 (arXiv 2510.06637): roll the controlled ARDM over a
window of L forecast steps with the preview buffer of each step and minimise

    J(psi) = E[ (1/L) sum_{j=1..L} score_j  +  lambda (1/L) sum_{n,s} e_{n,s} ],

with e_{n,s} = mean(d_{n,s}^2) / (2 sigma_hat_s^2) the control's KL cost per
sub-step (gencast_control.core.samplers) and score_j one of three objectives
(`ControllerTrainingConfig.objective`):

* "state" (twin experiments, simulations: the true trajectory is known
  offline): the fair CRPS of a small ensemble of M controlled rollouts
  against the truth x*_j, per entry, in units of the field's standard
  deviation (Ferro 2014; Zamo & Naveau 2018),

      CRPS_fair = (1/M) sum_m |x_m - x*| - 1/(2 M (M-1)) sum_{m != m'} |x_m - x_m'|.

  It is a proper score: its minimum over ensemble distributions is at the
  conditional distribution of the truth given what the controller saw, i.e.
  the posterior, so it neither copies observation noise (the truth carries
  none) nor collapses the members onto their mean, as a squared error would.
* "heldout" (only observations exist): a random `holdout_fraction` of the
  observed entries is hidden from the preview and scored by the fair CRPS of
  the members' predicted observations x_m + sigma_obs eps_m against y, in
  units of sigma_obs. The noise term makes it proper for the observations, so
  its optimum is the posterior predictive; the shown observations are never
  scored, so fitting their noise does not pay.
* "observations": the in-sample misfit sum ||M (x - y)||^2 / sigma_obs^2 / |M|
  of the observations the controller itself sees. Kept for comparison: its
  optimum copies the observation noise into the state (see docs/method.md).

Training starts where inference runs. Each example's members start from the
true state, or, with probability `cold_fraction`, from independent random
states of the training data (a cold start); then k ~ U{0..spinup} steps of
spin-up run without gradient, controlled by the current parameters when
`on_policy` (the states the controller itself produces, including its
recovery from a cold start) or unguided otherwise; the window of L steps with
gradients follows. The members are stepped together, so an ensemble-aware
controller (`ControllerConfig.spread_gate`, `ensemble_gain`) trains on the
spread it sees at inference. Gradients flow through every sampler sub-step
and the frozen denoiser into psi only; sub-steps are rematerialised
(jax.checkpoint). With `validate_every`, a long rollout (`validation_steps`,
cold start) on the validation split is scored every so often and the best
parameters are kept.

With `relative_cost`, each example enters as log(score + lambda e) instead:
its gradient is d(score + lambda e) / (score + lambda e), so every example
weighs by its relative improvement. Under the plain mean, an example near
the truth (KS fair CRPS 0.007-0.03 in the first 12 leads) counts a fifth to
a twentieth of a cold one (~0.16), and the cold starts give 96% of the
descent direction: the controller learns little about leaving a good
background alone (`benchmarks/loss_share.py` measures each start's share of
the gradient). Only the "state" objective takes it: the other two score no
entry in a window without (held-out) observations, where log(lambda e)
would weigh the control alone at full weight.

With `no_harm_weight` w > 0 ("state" objective), each example also runs its
members unguided (u = 0, no gradient) from the same start over the spin-up
and the window, with the same noise, and adds

    w (1/L) sum_{l=1..L} max(0, r_l - r^free_l),

r_l and r^free_l the RMSE (in field stds) of the controlled and the unguided
ensemble mean against the truth at the window's lead k + l: a hinge that
charges the controller wherever its ensemble mean is further from the truth
than the free forecast's, at that lead. With u = 0 it is exactly zero; from
a cold start the free forecast is far off and it is nearly always zero; from
the truth it is the per-lead "do no harm" condition itself.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.config import require
from gencast_control.training import sharding, training_loop
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.assimilation import ensemble_states
from gencast_control.core.controller import (ControllerConfig, bind_controller,
                                             init_controller,
                                             uses_ensemble_spread)
from gencast_control.core.observations import Observations
from gencast_control.core.regimes import ObservationRegime, sample_observations

OBJECTIVES = ("state", "heldout", "observations")
RELATIVE_FLOOR = 1e-6  # keeps log(cost) finite for a perfect example


@dataclasses.dataclass(frozen=True)
class ControllerTrainingConfig:
  """Attributes:
    objective: "state", "heldout" or "observations" (module docstring).
    members: controlled rollouts per example, scored together (>= 2 for the
      CRPS objectives).
    window: forecast steps L with gradients per example.
    spinup: maximum number of spin-up steps (no gradient) before the window,
      drawn uniformly in 0..spinup per example.
    on_policy: spin up with the current controller (else unguided).
    cold_fraction: fraction of examples whose members start from independent
      random training states instead of the truth.
    holdout_fraction: fraction of the observations hidden from the preview
      and scored by the "heldout" objective (ignored by the others).
    control_cost: lambda, weight of the control's KL cost per forecast step
      (each example draws one of the caller's regimes uniformly).
    relative_cost: each example's cost is log(score + lambda e) (the module
      doc): each example weighs by its relative improvement, so near-truth
      examples count ("state" objective only).
    no_harm_weight: w of the per-lead hinge against the unguided forecast
      (the module doc; 0: none; "state" objective only).
    warm_start: path of a controller checkpoint (same architecture, same
      ARDM) to start from, e.g. a "state"-trained controller before
      "heldout" training on real observations ("": a fresh u = 0 start).
    validate_every: training steps between validation rollouts (0: none).
    validation_steps: length of a validation rollout (cold start).
    validation_members: ensemble members of a validation rollout.
    shard_batch: split each batch over a device mesh (gencast_control.training.sharding:
      axis "batch", parameters replicated); batch_size must be a multiple of
      the number of devices used. Multi-host jobs call
      sharding.initialize_distributed() first.
    num_devices: devices in the mesh when shard_batch (0: all devices).
  """
  objective: str = "state"
  members: int = 2
  window: int = 4
  spinup: int = 8
  on_policy: bool = True
  cold_fraction: float = 0.5
  holdout_fraction: float = 0.3
  batch_size: int = 8
  num_steps: int = 400
  learning_rate: float = 1e-3
  control_cost: float = 1e-3
  relative_cost: bool = False
  no_harm_weight: float = 0.0
  seed: int = 0
  checkpoint_every: int = 50
  log_every: int = 10
  warm_start: str = ""
  validate_every: int = 0
  validation_steps: int = 200
  validation_members: int = 4
  shard_batch: bool = False
  num_devices: int = 0

  def __post_init__(self):
    require(self, positive=("num_steps", "batch_size", "learning_rate",
                            "checkpoint_every", "log_every",
                            "validation_steps", "validation_members"),
            nonnegative=("control_cost", "no_harm_weight", "validate_every",
                         "num_devices"))
    if self.objective not in OBJECTIVES:
      raise ValueError(f"unknown controller objective {self.objective!r};"
                       f" choose one of {OBJECTIVES}")
    low = 2 if self.objective in ("state", "heldout") else 1
    if self.members < low:
      raise ValueError(f"objective {self.objective!r} needs members >= {low},"
                       f" got {self.members}")
    if self.window < 1 or self.spinup < 0:
      raise ValueError(f"need window >= 1 and spinup >= 0, got {self.window},"
                       f" {self.spinup}")
    if not 0.0 <= self.cold_fraction <= 1.0:
      raise ValueError(f"cold_fraction must be in [0, 1], got"
                       f" {self.cold_fraction}")
    if self.relative_cost and self.objective != "state":
      raise ValueError("relative_cost needs the 'state' objective (the others"
                       " score windows without observations as zero), got"
                       f" {self.objective!r}")
    if self.no_harm_weight and self.objective != "state":
      raise ValueError("no_harm_weight needs the 'state' objective (the hinge"
                       f" scores against the truth), got {self.objective!r}")
    if self.objective == "heldout" and not 0.0 < self.holdout_fraction < 1.0:
      raise ValueError("objective 'heldout' needs 0 < holdout_fraction < 1,"
                       f" got {self.holdout_fraction}")

  def mesh(self) -> jax.sharding.Mesh | None:
    """The device mesh of a sharded run (None unless shard_batch)."""
    return sharding.training_mesh(self.shard_batch, self.num_devices,
                                  self.batch_size)


# ---------------------------------------------------------------- scores


def fair_crps(members: jax.Array, target: jax.Array) -> jax.Array:
  """Fair CRPS per entry of an ensemble [M, ...] against target [...].

  (1/M) sum_m |x_m - y| - 1/(2 M (M-1)) sum_{m, m'} |x_m - x_m'|: unbiased
  for the CRPS of the distribution the M members are drawn from.
  """
  m = members.shape[0]
  skill = jnp.mean(jnp.abs(members - target[None]), axis=0)
  # Distinct pairs only: the diagonal |x_m - x_m| = 0 has no defined
  # gradient, and XLA's fusions can give it a spurious one (sharded and
  # one-device gradients then differ).
  first, second = np.triu_indices(m, 1)
  spread = 2.0 * jnp.sum(jnp.abs(members[first] - members[second]), axis=0)
  return skill - spread / (2 * m * (m - 1))


def split_observations(observations: Observations, key: jax.Array,
                       holdout_fraction: float
                       ) -> tuple[Observations, Observations]:
  """Partitions observed entries into (shown, held out) at random."""
  hidden = jax.random.bernoulli(key, holdout_fraction,
                                observations.mask.shape)
  shown = observations.mask * (1.0 - hidden)
  held_out = observations.mask - shown
  return (dataclasses.replace(observations, mask=shown,
                              values=observations.values * shown),
          dataclasses.replace(observations, mask=held_out,
                              values=observations.values * held_out))


def window_score(objective: str, states: jax.Array, truth: jax.Array,
                 scored: Observations, scale: jax.Array, key: jax.Array
                 ) -> jax.Array:
  """The objective's score of members' states [M, L, ...] over a window.

  truth: [L, ...]; scored: the observations scored at those times (the
  held-out ones for "heldout", the previewed ones for "observations");
  scale: per-channel field std of the "state" score.
  """
  # Entries the data leave undefined (NaN, e.g. sea surface temperature over
  # land) are zeroed before scoring, so they carry neither value nor gradient.
  states = jnp.where(jnp.isfinite(states), states, 0.0)
  if objective == "state":
    valid = jnp.isfinite(truth)
    crps = fair_crps(states / scale, jnp.where(valid, truth, 0.0) / scale)
    return jnp.sum(crps * valid) / jnp.maximum(jnp.sum(valid), 1)
  if objective == "observations":
    return jnp.mean(jax.vmap(lambda s: scored.misfit(s, slice(None)))(states))
  std = scored.entry_std()
  noise = std * jax.random.normal(key, states.shape)
  crps = fair_crps((states + noise) / std, scored.values / std)
  return jnp.sum(scored.mask * crps) / jnp.maximum(jnp.sum(scored.mask), 1.0)


def ensemble_mean_rmse(states: jax.Array, truth: jax.Array,
                       scale: jax.Array) -> jax.Array:
  """RMSE [L] of the ensemble mean of states [M, L, ...] against truth
  [L, ...] at each time, in units of the per-channel std `scale`; entries
  not finite in the truth are left out."""
  valid = jnp.isfinite(truth)
  error = (jnp.mean(states, axis=0) - jnp.where(valid, truth, 0.0)) / scale
  axes = tuple(range(1, error.ndim))
  count = jnp.maximum(jnp.sum(valid, axis=axes), 1)
  # The floor keeps the root's gradient finite at a perfect mean.
  return jnp.sqrt(jnp.sum(jnp.where(valid, error, 0.0)**2, axis=axes) / count
                  + 1e-12)


def no_harm_hinge(states: jax.Array, free: jax.Array, truth: jax.Array,
                  scale: jax.Array) -> jax.Array:
  """(1/L) sum_l max(0, r_l - r^free_l): the mean over the L leads of how
  far the controlled ensemble mean (states [M, L, ...]) is further from the
  truth [L, ...] than the free one's (free [M, L, ...]) at that lead, RMSE in
  units of `scale`. Per lead: a lead where the controller helps does not pay
  for one where it harms. A free forecast that blew up (NaN) is beaten at
  that lead (no charge); a controlled one that did is scored as zeros."""
  free_rmse = ensemble_mean_rmse(free, truth, scale)
  free_rmse = jnp.where(jnp.isnan(free_rmse), jnp.inf, free_rmse)
  states = jnp.where(jnp.isfinite(states), states, 0.0)
  return jnp.mean(jax.nn.relu(
      ensemble_mean_rmse(states, truth, scale) - free_rmse))


# --------------------------------------------------------------- windows


def window_index(shape: tuple[int, ...], key: jax.Array, batch_size: int,
                 length: int) -> tuple[np.ndarray, np.ndarray]:
  """(trajectory [B, 1], times [B, length]) of random windows of [N, T, ...]."""
  num_traj, num_times = shape[:2]
  if num_times < length:
    raise ValueError(f"trajectories have {num_times} times, training windows"
                     f" need {length}")
  k1, k2 = jax.random.split(key)
  traj = jax.random.randint(k1, (batch_size,), 0, num_traj)
  t0 = jax.random.randint(k2, (batch_size,), 0, num_times - length + 1)
  return (np.asarray(traj)[:, None],
          np.asarray(t0)[:, None] + np.arange(length)[None, :])


def sample_windows(data, key: jax.Array, batch_size: int, length: int):
  """Random windows [B, length, *spatial, C] of trajectories [N, T, ...]."""
  return data[window_index(data.shape, key, batch_size, length)]


def window_batches(data: np.ndarray, context, batch_size: int, members: int,
                   length: int, history_length: int):
  """batches(key) -> (windows, cold starts, context windows), on the host.

  windows: [B, length, *spatial, C] random windows of the trajectories
  [N, T, ...]; cold: [B, M, h, ...] independent random histories;
  context: the windows' context (leaves [B, length, ...]) or None. The
  draws use the batch key as the in-jit sampling of earlier versions did.
  """
  def draw(key):
    k_data, k_cold, _ = jax.random.split(key, 3)
    index = window_index(data.shape, k_data, batch_size, length)
    cold = sample_windows(data, k_cold, batch_size * members, history_length)
    cold = cold.reshape((batch_size, members) + cold.shape[1:])
    window_context = (None if context is None
                      else jax.tree.map(lambda c: c[index], context))
    return data[index], cold, window_context

  return draw


class StreamedWindows:
  """window_batches' batches from a stream of whole example trajectories.

  batches(key) -> (windows, cold starts, context windows) as window_batches
  gives them, where `stream(k)` -> (states [b, T, *spatial, C], context
  (leaves [b, T, ...]) or None) are the examples of the step whose batch key
  is k (e.g. data.example_stream.ExampleStream over a store), read on
  demand instead of held in memory. Each example gives one window (a random
  start when T > length); the cold starts are random histories of the
  batch's own examples. `prefetch(key)` asks the stream (if it can) to read
  a future step's examples in the background.

  A stream may give the whole batch (batch_size examples) or, in a
  multi-process run, this process's part of it (batch_size /
  process_count): then `process_local` is set and training_loop.train places
  the parts with sharding.shard_local_batch, which needs a device mesh.
  """

  def __init__(self, stream, batch_size: int, members: int, length: int,
               history_length: int, sharded: bool = False):
    self.stream = stream
    self.batch_size, self.members = batch_size, members
    self.length, self.history_length = length, history_length
    self.sharded = sharded
    self.process_local = False

  @staticmethod
  def _stream_key(key: jax.Array) -> jax.Array:
    return jax.random.split(key, 3)[0]  # window_batches' data key

  def prefetch(self, key: jax.Array) -> None:
    if hasattr(self.stream, "prefetch"):
      self.stream.prefetch(self._stream_key(key))

  def _check(self, states: np.ndarray) -> None:
    size, processes = states.shape[0], jax.process_count()
    if size == self.batch_size:
      self.process_local = False
    elif processes > 1 and size * processes == self.batch_size:
      if not self.sharded:
        raise ValueError("a stream of process-local batches needs"
                         " controller_training.shard_batch (a device mesh)")
      self.process_local = True
    else:
      raise ValueError(f"the stream gave {size} examples; batch_size"
                       f" {self.batch_size} needs {self.batch_size} (or"
                       f" {self.batch_size // processes} per process of"
                       f" {processes})")
    if states.shape[1] < self.length:
      raise ValueError(f"streamed examples have {states.shape[1]} times,"
                       f" training windows need {self.length}")

  def __call__(self, key: jax.Array):
    k_data, k_cold, _ = jax.random.split(key, 3)
    states, context = self.stream(k_data)
    states = np.asarray(states, np.float32)
    self._check(states)
    size, num_times = states.shape[:2]
    start = np.zeros((size, 1), int)
    if num_times > self.length:
      start = np.asarray(jax.random.randint(jax.random.fold_in(k_data, 1),
                                            (size, 1), 0,
                                            num_times - self.length + 1))
    index = (np.arange(size)[:, None], start + np.arange(self.length))
    cold = sample_windows(states, k_cold, size * self.members,
                          self.history_length)
    cold = cold.reshape((size, self.members) + cold.shape[1:])
    window_context = (None if context is None else
                      jax.tree.map(lambda c: np.asarray(c)[index], context))
    return states[index], cold, window_context


def shift_observations(observations: Observations, start: jax.Array,
                       length: int) -> Observations:
  """The stream over times start..start+length-1 (zeros past its end)."""
  pad = [(0, length)] + [(0, 0)] * (observations.values.ndim - 1)
  take = lambda a, fill=0.0: jax.lax.dynamic_slice_in_dim(
      jnp.pad(a, pad, constant_values=fill), start, length)
  noise_std = (take(observations.noise_std, 1.0)
               if observations.heteroscedastic else observations.noise_std)
  return dataclasses.replace(observations, values=take(observations.values),
                             mask=take(observations.mask),
                             noise_std=noise_std)


def observe_defined(regimes: ObservationRegime | Sequence[ObservationRegime],
                    key: jax.Array, truth: jax.Array,
                    phase: int | jax.Array = 0,
                    choice: int | jax.Array = 0) -> Observations:
  """sample_observations of truth [T+1, ...] that never observes an entry the
  data leave undefined (NaN, e.g. sea surface temperature over land)."""
  valid = jnp.isfinite(truth)
  observations = sample_observations(
      regimes, key, jnp.where(valid, truth, 0.0), phase, choice)
  return dataclasses.replace(observations, mask=observations.mask * valid,
                             values=observations.values * valid)


def example_cost(ardm: FrozenARDM, controller, frozen_controller, horizon: int,
                 regimes: Sequence[ObservationRegime], truth_window: jax.Array,
                 cold_histories: jax.Array, scale: jax.Array, key: jax.Array,
                 training: ControllerTrainingConfig, context=None):
  """Cost of one example: M members spun up, then a controlled window.

  Returns (cost, {"score", "energy", "cold": whether the members started
  cold, "first_lead": the window's first step after the start}).

  truth_window: [h + spinup + L, *spatial, C]; cold_histories: [M, h, ...]
  random training states; frozen_controller: the controller with gradients
  stopped, used for an on-policy spin-up; context: the model's context over
  the window's times (leaves [h + spinup + L, ...]) or None. Truth entries
  that are not finite are never observed nor scored.
  """
  h, spinup, window = ardm.history_length, training.spinup, training.window
  keys = jax.random.split(key, 8)
  truth = truth_window[h - 1:]  # times 0..spinup + L
  choice = jax.random.randint(keys[0], (), 0, len(regimes))
  phase = jax.random.randint(keys[1], (), 0, max(r.every for r in regimes))
  observations = observe_defined(regimes, keys[2], truth, phase, choice)
  shown, scored = observations, observations
  if training.objective == "heldout":
    shown, scored = split_observations(observations, keys[3],
                                       training.holdout_fraction)
  cold = jax.random.bernoulli(keys[4], training.cold_fraction)
  starts = jnp.where(cold, cold_histories, truth_window[None, :h])
  k = jax.random.randint(keys[5], (), 0, spinup + 1)
  member_keys = jax.random.split(keys[6], training.members)

  def times(c, start, length):
    return (None if c is None else jax.tree.map(
        lambda leaf: jax.lax.dynamic_slice_in_dim(leaf, start, length), c))

  # The members are stepped together (an ensemble-aware controller sees
  # their spread); spin-up and window draw their keys from each member's.
  k_spin, k_window = jax.vmap(jax.random.split, out_axes=1)(member_keys)

  def spun_up(spin_controller):
    """The members' histories after k spin-up steps (no gradient)."""
    if spinup == 0:
      return starts
    states, _ = ensemble_states(ardm, starts, spinup, k_spin, shown,
                                spin_controller, horizon,
                                context=times(context, 0, h + spinup))
    states = jax.lax.stop_gradient(
        jnp.concatenate([starts[:, :h - 1], states], axis=1))
    return jax.lax.dynamic_slice_in_dim(states, k, h, axis=1)

  spin_controller = frozen_controller if training.on_policy else None
  histories = spun_up(spin_controller)
  window_obs = shift_observations(shown, k, window + 1 + horizon)
  states, energy = ensemble_states(ardm, histories, window, k_window,
                                   window_obs, controller, horizon,
                                   remat=True,
                                   context=times(context, k, h + window))
  states = states[:, 1:]  # [M, L, ...]
  energy = jnp.sum(energy.reshape(energy.shape[0], -1), axis=1)
  window_truth = jax.lax.dynamic_slice_in_dim(truth, k + 1, window)
  window_scored = shift_observations(scored, k + 1, window)
  score = window_score(training.objective, states, window_truth,
                       window_scored, scale, keys[7])
  energy = jnp.mean(energy) / window
  cost = score + training.control_cost * energy
  harm = jnp.zeros(())
  if training.no_harm_weight:
    # The same start, spin-up and window with u = 0 and the same noise.
    free = histories if spin_controller is None else spun_up(None)
    free, _ = ensemble_states(ardm, free, window, k_window, remat=True,
                              context=times(context, k, h + window))
    harm = no_harm_hinge(states, jax.lax.stop_gradient(free[:, 1:]),
                         window_truth, scale)
    cost = cost + training.no_harm_weight * harm
  if training.relative_cost:
    cost = jnp.log(cost + RELATIVE_FLOOR)
  return cost, {"score": score, "energy": energy, "harm": harm, "cold": cold,
                "first_lead": k + 1}


def channel_scale(data: np.ndarray) -> np.ndarray:
  """Per-channel std [C] of trajectories [N, T, ..., C] (NaN ignored)."""
  axes = tuple(range(data.ndim - 1))
  return (np.nanstd(data, axis=axes) + 1e-6).astype(np.float32)


def example_cost_fn(ardm: FrozenARDM, scale,
                    regimes: Sequence[ObservationRegime],
                    config: ControllerConfig,
                    training: ControllerTrainingConfig):
  """cost(params, window, cold starts, key, context) of one example
  (`example_cost`, the on-policy spin-up with gradients stopped)."""
  scale = jnp.asarray(scale)

  def cost(params, window, cold, key, context=None):
    controller = bind_controller(config, ardm.periodic, params)
    frozen = bind_controller(config, ardm.periodic,
                             jax.lax.stop_gradient(params))
    return example_cost(ardm, controller, frozen, config.horizon, regimes,
                        window, cold, scale, key, training, context)

  return cost


def controller_loss_fn(ardm: FrozenARDM, scale: np.ndarray,
                       regimes: Sequence[ObservationRegime],
                       config: ControllerConfig,
                       training: ControllerTrainingConfig,
                       mesh: jax.sharding.Mesh | None = None):
  """loss_fn(params, key, batch) -> (mean example cost, metrics).

  batch: (windows, cold starts, context windows) of `window_batches`;
  scale: the per-channel std of the "state" score. With a mesh, the batch
  and keys are sharded over it (the vmapped rollout then runs data-parallel;
  the mean becomes an all-reduce).
  """
  if mesh is not None:
    sharding.check_batch_size(training.batch_size, mesh)
  cost = example_cost_fn(ardm, scale, regimes, config, training)

  def loss_fn(params, key, batch):
    windows, cold, context = batch
    # The first two parts of the key drew the batch (window_batches).
    keys = jax.random.split(jax.random.split(key, 3)[2], training.batch_size)
    if mesh is not None:
      windows, cold, context, keys = sharding.constrain_batch(
          (windows, cold, context, keys), mesh)
    costs, parts = jax.vmap(cost, in_axes=(None, 0, 0, 0, 0))(
        params, windows, cold, keys, context)
    metrics = {"score": jnp.mean(parts["score"]),
               "energy": jnp.mean(parts["energy"])}
    if training.no_harm_weight:
      metrics["harm"] = jnp.mean(parts["harm"])
    return jnp.mean(costs), metrics

  return loss_fn


# ------------------------------------------------------------ validation


def validation_fn(ardm: FrozenARDM, data: np.ndarray,
                  regimes: Sequence[ObservationRegime],
                  config: ControllerConfig,
                  training: ControllerTrainingConfig, context=None):
  """validate(params) -> {"validation_rmse", "validation_crps"}.

  One cold-start rollout of `validation_steps` per regime on the first
  validation trajectory (members start from other validation states), scored
  over its second half (after the burn-in of a cold start) in units of the
  field's std; RMSE of the ensemble mean, fair CRPS, both averaged over the
  regimes; entries that are not finite in the truth are left out. A
  diverged rollout scores inf. context: the model's context of the
  validation trajectories (leaves [N, T, ...]) or None.
  """
  steps, members = training.validation_steps, training.validation_members
  h = ardm.history_length
  data = np.asarray(data, np.float32)
  if data.shape[1] < h + steps:
    raise ValueError(f"validation trajectories have {data.shape[1]} times;"
                     f" validation_steps={steps} needs {h + steps}")
  scale = channel_scale(data)
  truth = jnp.asarray(data[0, :h + steps])
  if context is not None:
    context = jax.tree.map(lambda c: jnp.asarray(c[0, :h + steps]), context)
  valid = jnp.isfinite(truth[h - 1:][steps // 2 + 1:])
  key = jax.random.PRNGKey(training.seed + 7)
  starts = sample_windows(jnp.asarray(data[1:] if len(data) > 1 else data),
                          key, members, h)
  obs = [observe_defined(r, jax.random.fold_in(key, i), truth[h - 1:])
         for i, r in enumerate(regimes)]

  @jax.jit
  def scores(params, observations):
    controller = bind_controller(config, ardm.periodic, params)
    ens = ensemble_states(ardm, starts, steps, jax.random.split(key, members),
                          observations, controller, config.horizon,
                          context=context)[0]
    ens = jnp.where(valid, ens[:, steps // 2 + 1:], 0.0) / scale
    tru = jnp.where(valid, truth[h - 1:][steps // 2 + 1:], 0.0) / scale
    count = jnp.maximum(jnp.sum(valid), 1)
    rmse = jnp.sqrt(jnp.sum((ens.mean(0) - tru)**2) / count)
    return rmse, jnp.sum(fair_crps(ens, tru)) / count

  def validate(params) -> dict[str, float]:
    values = np.array([[float(v) for v in scores(params, o)] for o in obs])
    values = np.where(np.isfinite(values), values, np.inf)
    return {"validation_rmse": float(values[:, 0].mean()),
            "validation_crps": float(values[:, 1].mean())}

  return validate


def train_controller(ardm: FrozenARDM, train_data: np.ndarray,
                     regimes: Sequence[ObservationRegime],
                     config: ControllerConfig,
                     training: ControllerTrainingConfig, workdir=None,
                     progress: bool = True, params=None,
                     validation_data: np.ndarray | None = None,
                     context=None, validation_context=None, batches=None,
                     scale: np.ndarray | None = None, data_identity=None):
  """Trains u_psi on trajectories [N, T, *spatial, C]; ARDM stays frozen.

  Each example picks one of `regimes` at random, so one controller serves
  several observing systems. With training.shard_batch the batch is split
  over all (or num_devices) devices; the data and parameters are replicated.
  With training.validate_every and validation_data, the parameters of the
  best validation CRPS are returned (and kept in workdir/best.npz).
  context, validation_context: the model's per-time context of the
  trajectories (leaves [N, T, ...], gencast_control.core.ardm), for models that
  take one (GenCast's forcings); None otherwise. The trajectories stay in
  host memory; each step's windows are drawn there (window_batches).

  Streamed examples instead of trajectories in memory (train_data and
  context None): batches(key) -> (states [b, T, *spatial, C], context or
  None) of the step whose batch key is key, T >= h + spinup + window, the
  whole batch or this process's part of it (StreamedWindows; e.g. a
  data.example_stream.ExampleStream, whose prefetch is used); scale: the
  per-channel std [C] of the "state" score (e.g. the model's climatological
  std), the same on every process; data_identity: what defines the
  examples (e.g. the store and the example times), fingerprinted for the
  run identity in place of the arrays.

  Returns:
    (controller params, history of logged metrics).
  """
  if uses_ensemble_spread(config) and min(
      training.members, training.validation_members) < 2:
    raise ValueError(
        "an ensemble-aware controller (controller.spread_gate or"
        " controller.ensemble_gain) trains and"
        " validates ensembles of at least 2 members; got members="
        f"{training.members}, validation_members="
        f"{training.validation_members}")
  streamed = batches is not None
  if streamed:
    if train_data is not None or context is not None:
      raise ValueError("train_controller takes train_data (and context) or"
                       " a stream of batches, not both")
    if scale is None or data_identity is None:
      raise ValueError("streamed training needs the scale and data_identity"
                       " of its examples")
    scale = np.asarray(scale, np.float32)
    if scale.shape != tuple(ardm.state_shape[-1:]):
      raise ValueError(f"scale has shape {scale.shape}; the ARDM has"
                       f" {ardm.state_shape[-1]} channels")
  else:
    if scale is not None or data_identity is not None:
      raise ValueError("scale and data_identity are for streamed batches;"
                       " with train_data they come from the arrays")
    train_data = np.asarray(train_data, np.float32)
    if tuple(train_data.shape[2:]) != tuple(ardm.state_shape):
      raise ValueError(f"training data states {train_data.shape[2:]} do not"
                       f" match the ARDM state shape {ardm.state_shape}")
    scale = channel_scale(train_data)
  if not regimes:
    raise ValueError("train_controller needs at least one observation regime")
  validate = None
  if training.validate_every > 0:
    if validation_data is None:
      raise ValueError("validate_every > 0 needs validation trajectories")
    validate = validation_fn(ardm, validation_data, regimes, config, training,
                             validation_context)
  mesh = training.mesh()
  key = jax.random.PRNGKey(training.seed)
  if params is None:
    params = init_controller(config, ardm, key)
  h = ardm.history_length
  length = h + training.spinup + training.window
  if streamed:
    batches = StreamedWindows(batches, training.batch_size, training.members,
                              length, h, sharded=mesh is not None)
    data = (data_identity, scale, validation_data, validation_context)
  else:
    batches = window_batches(train_data, context, training.batch_size,
                             training.members, length, h)
    data = (train_data, validation_data, context, validation_context)
  loss_fn = controller_loss_fn(ardm, scale, regimes, config, training, mesh)
  optimizer = training_loop.make_optimizer(training.learning_rate,
                                           training.num_steps)
  return training_loop.train(
      loss_fn, params, optimizer, training.num_steps,
      jax.random.fold_in(key, 1), workdir, training.checkpoint_every,
      training.log_every, f"controller ({training.objective} objective)",
      progress=progress, mesh=mesh, validate=validate,
      validate_every=training.validate_every,
      best_metric="validation_crps",
      batches=batches,
      identity=training_loop.run_identity(
          training, data, dataclasses.asdict(config),
          [dataclasses.asdict(r) for r in regimes], params,
          frozen=ardm.fingerprint),
      divergence_hint="Lower controller_training.learning_rate (now"
      f" {training.learning_rate:g}) or raise control_cost")
