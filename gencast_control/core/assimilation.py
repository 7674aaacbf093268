"""Data assimilation as one causal, controlled forward rollout.

For n = 0..T-1 (Srivastava et al. 2025, arXiv 2510.06637, Sec. 3):

    x_{n+1} = controlled_sampler(x_{n-h+1..n}, preview_n; key_n),
    preview_n = {(y_j, M_j, j - n) : n < j <= n + H},

with no adjoint, no gradient of the denoiser and no test-time optimisation.
Without a controller the same loop is the unguided ARDM forecast. Ensemble
members use independent noise, key_m = fold_in(key, m), and are stepped
together (a scan over the steps, the members vmapped inside it), so an
ensemble-aware controller sees their spread; a controller trained with
perturbed observations gives each member its own copy of them
(`perturbed_preview`). With several local devices the members are split over
them (a `sample` mesh axis, jax.sharding), the model and the observations
replicated.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gencast_control.core.ardm import ControllerFn, FrozenARDM
from gencast_control.core.controller import (perturbs_observations,
                                             uses_ensemble_spread)
from gencast_control.core.observations import Observations, Preview


# fold_in datum of a member's observation perturbations: a step index no
# rollout reaches, so their keys never meet the sampler's fold_in(key, n).
_PERTURBATION_STREAM = 2**31 - 1


def perturbed_preview(preview: Preview, key: jax.Array,
                      first_frame) -> Preview:
  """The preview with every observation y_j replaced by y_j + eps_j,
  eps_j ~ N(0, sigma_j^2) (perturbed observations, Burgers et al. 1998).
  eps_j is drawn from fold_in(fold_in(key, stream), j) with j the frame's
  index in the stream (`first_frame` is the preview's first), so a member
  sees one perturbation of y_j at every step that previews it."""
  key = jax.random.fold_in(key, _PERTURBATION_STREAM)
  frames = first_frame + jnp.arange(preview.values.shape[0])
  noise = jax.vmap(lambda j: jax.random.normal(
      jax.random.fold_in(key, j), preview.values.shape[1:],
      preview.values.dtype))(frames)
  return preview._replace(
      values=preview.values + preview.mask * preview.error_std * noise)


def forecast_step(ardm: FrozenARDM, history: jax.Array, n, key: jax.Array,
                  observations: Observations | None,
                  controller: ControllerFn | None, horizon: int,
                  remat: bool = False, first_step=0, context=None,
                  spread: jax.Array | None = None):
  """Step n of `rollout` (traceable): (next history, x_{n+1}, energy).
  spread: the ensemble's spread of x_n for an ensemble-aware controller
  (`ensemble_step`), handed to it with the preview."""
  h = ardm.history_length
  preview = step_context = None
  if controller is not None:
    preview = observations.preview(n, horizon)._replace(
        ensemble_spread=spread)
    if perturbs_observations(controller):
      preview = perturbed_preview(preview, key, first_step + n + 1)
  if context is not None:
    step_context = jax.tree.map(
        lambda c: jax.lax.dynamic_slice_in_dim(c, n, h + 1), context)
  x_next, energy = ardm.step(history, jax.random.fold_in(key, first_step + n),
                             preview, controller, remat, step_context)
  return (jnp.concatenate([history[1:], x_next[None]], axis=0), x_next,
          energy)


def rollout(ardm: FrozenARDM, history: jax.Array, num_steps: int,
            key: jax.Array, observations: Observations | None = None,
            controller: ControllerFn | None = None, horizon: int = 1,
            remat: bool = False, first_step: int | jax.Array = 0,
            context=None) -> tuple[jax.Array, jax.Array]:
  """One trajectory x_0..x_T from the initial history (traceable): a
  one-member `ensemble_states`.

  Args:
    ardm: the frozen model.
    history: [h, *spatial, C] states at times -h+1..0.
    num_steps: T.
    key: PRNG key; step n uses fold_in(key, first_step + n).
    observations: the stream over times 0..T (needed with a controller).
    controller: u_psi or None.
    horizon: lookahead horizon H of the preview.
    remat: the training mode: rematerialise sampler sub-steps and unroll
      the loops over forecast steps and sub-steps (differentiating rolled
      loops of convolutions is several times slower on XLA:CPU;
      `samplers.sample`).
    first_step: global index of step 0, so that a run continued from another
      run's last state (data-assimilation cycling) draws the keys of one run
      over both periods.
    context: the model's per-step inputs over times -h+1..T (leaves
      [h + T, ...], gencast_control.core.ardm); step n gets times n-h+1..n+1.

  Returns:
    (states [T+1, *spatial, C] with states[0] = history[-1], the control
    energy of each sub-step summed over the forecast steps: [S] for a sampler
    that reports per-sub-step energies, else a scalar).
  """
  states, energies = ensemble_states(ardm, history[None], num_steps,
                                     key[None], observations, controller,
                                     horizon, remat, first_step, context)
  return states[0], energies[0]


_ONE_MEMBER = ("this controller is ensemble-aware (spread_gate or"
               " ensemble_gain): it needs an"
               " ensemble of at least 2 members, got 1")


def ensemble_step(ardm: FrozenARDM, histories: jax.Array, n,
                  keys: jax.Array, observations: Observations | None,
                  controller: ControllerFn | None, horizon: int,
                  remat: bool = False, first_step=0, context=None):
  """Step n of every member (traceable): histories [M, h, ...], keys [M]
  -> (next histories, x_{n+1} [M, ...], energies [M, ...]). An ensemble-aware
  controller (`controller.uses_ensemble_spread`) sees the members' spread of
  x_n, one reduction over the members per step (no gradient flows through
  it: the spread of identical members has none)."""
  spread = None
  if uses_ensemble_spread(controller):
    if histories.shape[0] < 2:
      raise ValueError(_ONE_MEMBER)
    spread = jax.lax.stop_gradient(jnp.std(histories[:, -1], axis=0,
                                           ddof=1))
  step = lambda history, key: forecast_step(
      ardm, history, n, key, observations, controller, horizon, remat,
      first_step, context, spread)
  return jax.vmap(step)(histories, keys)


def ensemble_states(ardm: FrozenARDM, histories: jax.Array, num_steps: int,
                    keys: jax.Array, observations: Observations | None = None,
                    controller: ControllerFn | None = None, horizon: int = 1,
                    remat: bool = False, first_step: int | jax.Array = 0,
                    context=None) -> tuple[jax.Array, jax.Array]:
  """The members x_0..x_T stepped together (traceable): `rollout` of every
  member, keys [M] (member m's key), histories [M, h, *spatial, C].

  Returns (states [M, T+1, *spatial, C], energies [M, S] or [M]).
  """

  def body(histories, n):
    histories, x_next, energy = ensemble_step(
        ardm, histories, n, keys, observations, controller, horizon, remat,
        first_step, context)
    return histories, (x_next, energy)

  _, (states, energies) = jax.lax.scan(body, histories,
                                       jnp.arange(num_steps), unroll=remat)
  states = jnp.concatenate([histories[None, :, -1], states], axis=0)
  return jnp.moveaxis(states, 0, 1), jnp.sum(energies, axis=0)


def member_histories(history, ensemble_size: int,
                     expected: tuple[int, ...]) -> jax.Array:
  """The initial history of every member, [M, h, *spatial, C].

  history: one history [h, *spatial, C] shared by all members (e.g. the true
  state of a twin experiment), or an initial ensemble [M, h, *spatial, C]
  with one history per member (e.g. a cold start from climatological states).
  expected: (h, *spatial, C).
  """
  history = jnp.asarray(history, jnp.float32)
  if ensemble_size < 1:
    raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
  if tuple(history.shape) == tuple(expected):
    history = jnp.broadcast_to(history, (ensemble_size,) + history.shape)
  elif tuple(history.shape) != (ensemble_size,) + tuple(expected):
    raise ValueError(
        f"initial history must have shape {tuple(expected)} (history_length,"
        " *state_shape) or, one per member, "
        f"{(ensemble_size,) + tuple(expected)}; got {tuple(history.shape)}")
  return history


def _check_inputs(ardm, num_steps, observations, controller, context,
                  ensemble_size=2):
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if uses_ensemble_spread(controller) and ensemble_size < 2:
    raise ValueError(_ONE_MEMBER)
  if controller is not None:
    if observations is None:
      raise ValueError("a controlled rollout needs observations")
    observations.check_compatible(ardm.state_shape, num_steps)
  if context is not None:
    times = ardm.history_length + num_steps
    for path, leaf in jax.tree_util.tree_flatten_with_path(context)[0]:
      if np.shape(leaf)[:1] != (times,):
        raise ValueError(
            f"context{jax.tree_util.keystr(path)} has shape {np.shape(leaf)};"
            f" its leading axis must cover the h + T = {times} times -h+1..T")


def ensemble_rollout(ardm: FrozenARDM, history, num_steps: int,
                     key: jax.Array, ensemble_size: int = 1,
                     observations: Observations | None = None,
                     controller: ControllerFn | None = None,
                     horizon: int = 1, first_step: int = 0, context: Any = None,
                     progress: bool | str = False) -> jax.Array:
  """Ensemble of rollouts, [M, T+1, *spatial, C]; jit-compiled, vmapped.

  history: [h, *spatial, C] shared by the members, or [M, h, *spatial, C]
  (an initial ensemble, see `member_histories`).
  first_step, context: see `rollout`; the context is shared by the members.
  progress: a tqdm bar over the forecast steps (a string: its label).
  """
  run, arguments = ensemble_program(ardm, history, num_steps, key,
                                    ensemble_size, observations, controller,
                                    horizon, first_step, context)
  if not progress:
    return run(*arguments)
  # One compiled step per forecast step: the bar advances on the host and
  # an interrupt (Ctrl-C) lands between steps, not inside a long program.
  from tqdm.auto import tqdm
  histories, observations, keys, first, context = arguments
  step = _compiled_step(ardm, controller, horizon)
  states = [histories[:, -1]]
  label = progress if isinstance(progress, str) else "forecast steps"
  try:
    for n in tqdm(range(num_steps), desc=label, unit="step"):
      histories, x_next = step(histories, observations, keys,
                               jnp.asarray(n, jnp.int32), first, context)
      states.append(x_next)
  except KeyboardInterrupt:
    # let the step in flight finish, so the process never exits under it
    jax.block_until_ready(histories)
    raise
  return jnp.stack(states, axis=1)


def member_keys(key: jax.Array, ensemble_size: int) -> jax.Array:
  """Member m's PRNG key fold_in(key, m), m = 0..M-1, stacked."""
  return jax.vmap(lambda m: jax.random.fold_in(key, m))(
      jnp.arange(ensemble_size))


def member_sharding(ensemble_size: int):
  """NamedSharding that splits the member axis over the local devices (mesh
  axis `sample`), or None with one device or when M does not divide evenly
  (the members then run on the default device)."""
  devices = jax.local_devices()
  if len(devices) < 2 or ensemble_size % len(devices):
    return None
  mesh = jax.sharding.Mesh(np.asarray(devices), ("sample",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("sample"))


def ensemble_program(ardm: FrozenARDM, history, num_steps: int,
                     key: jax.Array, ensemble_size: int = 1,
                     observations: Observations | None = None,
                     controller: ControllerFn | None = None,
                     horizon: int = 1, first_step: int = 0,
                     context: Any = None):
  """(jitted program, its arguments) of `ensemble_rollout` after its input
  checks: program(*arguments) is the ensemble. For ahead-of-time compilation
  and timing, e.g. program.lower(*arguments).compile(). The members' initial
  histories and keys are split over the local devices (`member_sharding`)."""
  histories = member_histories(
      history, ensemble_size,
      (ardm.history_length,) + tuple(ardm.state_shape))
  ardm.check_history(histories)
  _check_inputs(ardm, num_steps, observations, controller, context,
                ensemble_size)
  run = _compiled_ensemble(ardm, controller, num_steps, horizon)
  keys = member_keys(key, ensemble_size)
  sharding = member_sharding(ensemble_size)
  if sharding is not None:
    histories, keys = jax.device_put((histories, keys), sharding)
  return run, (histories, observations, keys,
               jnp.asarray(first_step, jnp.int32), context)


@functools.lru_cache(maxsize=32)
def _compiled_ensemble(ardm, controller, num_steps, horizon):
  """One jitted ensemble rollout per (model, controller, length, horizon), so
  repeated calls reuse the compiled program."""

  @jax.jit
  def run(histories, observations, keys, first_step=0, context=None):
    return ensemble_states(ardm, histories, num_steps, keys, observations,
                           controller, horizon, first_step=first_step,
                           context=context)[0]

  return run


@functools.lru_cache(maxsize=32)
def _compiled_step(ardm, controller, horizon):
  """One jitted ensemble forecast step n (traced), for the progress bar."""

  @jax.jit
  def step(histories, observations, keys, n, first_step=0, context=None):
    return ensemble_step(ardm, histories, n, keys, observations, controller,
                         horizon, first_step=first_step, context=context)[:2]

  return step


def ensemble_to_dataset(ensemble, variables: Sequence[str],
                        spatial_dims: Sequence[str],
                        coords: dict | None = None,
                        times=None, attrs: dict | None = None) -> xr.Dataset:
  """[M, T+1, *spatial, C] -> Dataset with dims (sample, time, *spatial)."""
  ensemble = np.asarray(ensemble)
  if ensemble.shape[-1] != len(variables):
    raise ValueError(f"{ensemble.shape[-1]} channels but {len(variables)}"
                     " variable names")
  dims = ("sample", "time") + tuple(spatial_dims)
  coords = dict(coords or {})
  coords["sample"] = np.arange(ensemble.shape[0])
  coords["time"] = (np.arange(ensemble.shape[1]) if times is None
                    else np.asarray(times))
  data = {v: (dims, ensemble[..., c]) for c, v in enumerate(variables)}
  return xr.Dataset(data, coords=coords, attrs=attrs or {})
