"""Held-out truth and cold starts: what an evaluation runs from.

Truth trajectories are never seen in training: fresh draws of the system's
solver with seeds disjoint from the training data's (`test_trajectories`),
or a window of the test split on disk (`load_test_window`). A cold start
gives every member its own climatological state, unrelated to the truth, as
real DA does: windows of solver runs (`climatological_histories`) or of the
validation split, or a perfect-model filter's stored states
(`climatological_start`).
"""

from __future__ import annotations

import jax
import numpy as np

from gencast_control.data.trajectories import trajectories_to_array
from gencast_control.systems.experiment import ExperimentConfig
from gencast_control.systems.registry import get_system
from gencast_control.systems.pipeline import load_split

TEST_SEED_OFFSET = 10_000  # truth trajectories never seen in training
CLIMATOLOGY_SEED_OFFSET = 20_000


def test_trajectories(config: ExperimentConfig) -> np.ndarray:
  """Fresh truth trajectories [K, T+1, *spatial, C] from the solver."""
  system = get_system(config.system)
  if system.generate is None:
    raise ValueError(f"system {config.system!r} has no solver to draw test"
                     " trajectories from; use `evaluate --data` or `pilot`")
  a = config.assimilation
  ds = system.generate(
      jax.random.PRNGKey(TEST_SEED_OFFSET + a.seed), a.num_trajectories,
      a.num_steps + config.ardm.history_length - 1, config.pde,
      burn_in_steps=config.data.burn_in_steps)
  return trajectories_to_array(ds, system.variables)


def validation_trajectories(config: ExperimentConfig, num_trajectories: int,
                            num_steps: int) -> np.ndarray:
  """Trajectories [K, T + h, *spatial, C] drawn with the validation split's
  key (fold_in(PRNGKey(data.seed), 1), `experiment.simulate_splits`): what
  baselines are tuned on, never the test truth."""
  system = get_system(config.system)
  if system.generate is None:
    raise ValueError(f"system {config.system!r} has no solver to draw"
                     " validation trajectories from")
  ds = system.generate(
      jax.random.fold_in(jax.random.PRNGKey(config.data.seed), 1),
      num_trajectories, num_steps + config.ardm.history_length - 1,
      config.pde, burn_in_steps=config.data.burn_in_steps)
  return trajectories_to_array(ds, system.variables)


def load_test_window(config: ExperimentConfig, data_dir,
                     split: str = "test") -> np.ndarray:
  """The test split (or another) cut to config.assimilation's trajectories
  and length.

  Raises ValueError when the split is too short, instead of scoring fewer
  steps than the config asks for.
  """
  a = config.assimilation
  length = a.num_steps + config.ardm.history_length
  truth = load_split(config, data_dir, split)
  if truth.shape[1] < length:
    raise ValueError(
        f"the {split} split in {data_dir} holds {truth.shape[1]} times but"
        f" assimilation.num_steps={a.num_steps} needs {length} (history"
        f" {config.ardm.history_length} + steps); lower assimilation.num_steps"
        " or simulate longer trajectories (data.num_steps)")
  if truth.shape[0] < a.num_trajectories:
    print(f"note: the {split} split has {truth.shape[0]} trajectories, fewer"
          f" than assimilation.num_trajectories={a.num_trajectories}; using"
          " all of them")
  return truth[:a.num_trajectories, :length]


def climatological_histories(config: ExperimentConfig, count: int,
                             history_length: int, seed: int = 0
                             ) -> np.ndarray:
  """`count` random initial histories [count, h, *spatial, C] of a cold start.

  Random windows of h consecutive states from trajectories simulated like
  the training split (same solver, burn-in and length, a seed disjoint from
  the test truth's), so each is a state of the attractor unrelated to the
  truth: the climatological background of real DA.
  """
  system = get_system(config.system)
  if system.generate is None:
    raise ValueError(f"system {config.system!r} has no solver to draw"
                     " climatological states from")
  num_traj = 2
  ds = system.generate(
      jax.random.PRNGKey(CLIMATOLOGY_SEED_OFFSET + config.data.seed + seed),
      num_traj, config.data.num_steps, config.pde,
      burn_in_steps=config.data.burn_in_steps)
  states = trajectories_to_array(ds, system.variables)
  rng = np.random.default_rng(seed)
  traj = rng.integers(0, num_traj, count)
  t0 = rng.integers(0, states.shape[1] - history_length + 1, count)
  return np.stack([states[i, t:t + history_length]
                   for i, t in zip(traj, t0)]).astype(np.float32)


def cold_ensembles(config: ExperimentConfig, num_trajectories: int,
                   ensemble_size: int, history_length: int, seed: int = 0
                   ) -> np.ndarray:
  """Cold-start ensembles [K, M, h, *spatial, C]: every member of every
  trajectory its own `climatological_histories` window."""
  histories = climatological_histories(
      config, num_trajectories * ensemble_size, history_length, seed)
  return histories.reshape((num_trajectories, ensemble_size)
                           + histories.shape[1:])


def climatological_start(config: ExperimentConfig, data_dir, count: int,
                         ensemble_size: int, history_length: int,
                         seed: int, reference=None
                         ) -> tuple[np.ndarray, np.ndarray | None]:
  """Cold-start ensembles [K, M, h, lat, lon, C] and their source indices.

  With a perfect-model filter (`reference`: Held-Suarez's
  `baselines.perfect_model.PerfectModelFilter`, or anything with its
  `num_states`, `initial_channels(index)` and `options.ensemble_size`) the
  states are its stored validation-member model states (index [K, max(M,
  M_letkf)] into them: the filter's members and the last of the h
  consecutive states of each ARDM member, the first M); otherwise
  random windows of h consecutive validation-split states (index None).
  """
  rng = np.random.default_rng(seed)
  if reference is not None:
    # Member m's history: the stored states index - h + 1 .. index, which
    # follow one another at the store's step; the filter starts at index.
    size = max(ensemble_size, reference.options.ensemble_size)
    h = history_length
    index = rng.integers(h - 1, reference.num_states, (count, size))
    frames = index[:, :ensemble_size, None] + np.arange(1 - h, 1)
    states = reference.initial_channels(frames.ravel())
    return (states.reshape((count, ensemble_size, h) + states.shape[1:]),
            index)
  validation = load_split(config, data_dir, "validation")
  traj = rng.integers(0, validation.shape[0], (count, ensemble_size))
  first = rng.integers(0, validation.shape[1] - history_length + 1,
                       (count, ensemble_size))
  states = np.stack([validation[i, t:t + history_length]
                     for i, t in zip(traj.ravel(), first.ravel())])
  return states.reshape((count, ensemble_size) + states.shape[1:]), None
