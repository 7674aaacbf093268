"""The evaluation engine: demo, evaluate, benchmark and pilot run, score and
report through these functions.

Keys. With key = PRNGKey(seed), trajectory k's observations are drawn with
fold_in(key, 2k) (`observe`) and its ensemble with fold_in(key, 2k + 1)
(`member_key`; member m then uses fold_in(., m), `assimilation.member_keys`).
Every method of one evaluation gets the same truth, observations, initial
ensemble and keys, so score differences are the methods'.

Timing. A method's program for one trajectory (a jitted function and its
arguments) is compiled ahead of time, then run once and timed
(`run_programs`): wall-clock and the process's CPU time, summed over the
trajectories, compilation excluded.

Scores (`score`) of ensembles x [K, M, T+1, *spatial, C] against the truth y
[K, T+1, *spatial, C] over lead times t = B+1..T (t = 0 is the given start,
B the burn-in, default 0), with optional spatial weights w (latitude area
weights on a lat/lon grid, WeatherBench2's; uniform otherwise):

  rmse          sqrt( sum w (xbar - y)^2 / sum w ) over trajectories, times,
                space and channels; xbar the ensemble mean
  crps          the weighted mean of the fair CRPS (Ferro 2014)
  spread_skill  the unbiased spread-skill ratio (1 = reliable)
  rmse_per_time the RMSE of xbar at each t = 0..T
  rmse_a        DAPPER's rmse.a: mean over trajectories and t = B+1..T of
                sqrt( sum w (xbar - y)^2 / sum w ) over space and channels
  spread_a      DAPPER's spread.a: the same mean of sqrt( sum w s^2 / sum w ),
                s^2 the unbiased member variance (M >= 2)
  per_channel   with channel names: RMSE_c and CRPS_c, times channel_std[c]
                (physical units when the states are standardised)

Reports (`write_report`): NAME.json (everything), NAME.csv (one flat row per
regime and method) and NAME.md (a markdown table under the provenance header
of `provenance`), each written atomically; with `publish`, NAME.md's text
also goes to docs/results/ (the commands' --publish).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.checkpoint import atomic_write, to_strict_json
from gencast_control.core.observations import Observations
from gencast_control.core.regimes import ObservationRegime, sample_observations
from gencast_control.evaluation import metrics, provenance

# A program: (jitted function, its arguments); function(*arguments) is the
# method's ensemble [M, T+1, *spatial, C] for one trajectory.
Program = tuple[Callable[..., jax.Array], tuple[Any, ...]]


def observe(regime: ObservationRegime, truth: np.ndarray, history_length: int,
            key: jax.Array) -> list[Observations]:
  """Observations of each truth trajectory [K, h + T, ...] over its times
  h-1..h+T-1 (the assimilation's 0..T), trajectory k with fold_in(key, 2k)."""
  return [sample_observations(regime, jax.random.fold_in(key, 2 * k),
                              jnp.asarray(traj[history_length - 1:],
                                          jnp.float32))
          for k, traj in enumerate(np.asarray(truth))]


def member_key(key: jax.Array, trajectory: int) -> jax.Array:
  """The key of trajectory k's ensemble: fold_in(key, 2k + 1)."""
  return jax.random.fold_in(key, 2 * trajectory + 1)


@dataclasses.dataclass
class MethodRun:
  """One method over K trajectories: ensembles [K, M, T+1, *spatial, C],
  wall-clock and CPU seconds summed over trajectories, and XLA's memory
  estimate of the last trajectory's program (None where unavailable)."""
  ensembles: np.ndarray
  seconds: float
  cpu_seconds: float
  memory: dict | None


def memory_estimate(compiled) -> dict | None:
  """XLA's buffer estimate (argument, output, temp, total bytes) of a
  compiled program, None where the backend has no analysis."""
  try:
    stats = compiled.memory_analysis()
    parts = {name: int(getattr(stats, f"{name}_size_in_bytes"))
             for name in ("argument", "output", "temp")}
  except Exception:  # noqa: BLE001 - backends without the analysis
    return None
  parts["total"] = sum(parts.values())
  return parts


def run_program(program: Program) -> tuple[np.ndarray, float, float,
                                           dict | None]:
  """(output, wall seconds, CPU seconds, memory): compiled ahead of time
  (XLA's cache makes a repeat signature cheap), then run once and timed."""
  function, arguments = program
  compiled = function.lower(*arguments).compile()
  t0, c0 = time.perf_counter(), time.process_time()
  out = jax.block_until_ready(compiled(*arguments))
  return (np.asarray(out), time.perf_counter() - t0,
          time.process_time() - c0, memory_estimate(compiled))


def run_programs(programs: Iterable[Program]) -> MethodRun:
  """Runs one program per trajectory (`run_program`) and stacks them."""
  outputs, seconds, cpu, memory = [], 0.0, 0.0, None
  for program in programs:
    out, wall, cpu_seconds, memory = run_program(program)
    outputs.append(out)
    seconds += wall
    cpu += cpu_seconds
  return MethodRun(np.stack(outputs), seconds, cpu, memory)


def score(ensembles: np.ndarray, truth: np.ndarray,
          weights: np.ndarray | None = None, burn_in: int = 0,
          channels: Sequence[str] = (),
          channel_std: np.ndarray | None = None) -> dict:
  """The scores of the module docstring.

  Args:
    ensembles: [K, M, T+1, *spatial, C].
    truth: [K, T+1, *spatial, C].
    weights: optional [*spatial] weights of the spatial means.
    burn_in: B, lead times 1..B left out.
    channels: names of the C channels; given, adds `per_channel`.
    channel_std: [C] factor of the per-channel scores (default 1).
  """
  truth = np.asarray(truth, np.float64)
  if not 0 <= burn_in < truth.shape[1] - 1:
    raise ValueError(f"burn_in must be in 0..{truth.shape[1] - 2} for"
                     f" {truth.shape[1] - 1} steps, got {burn_in}")
  first = burn_in + 1
  ensembles = np.asarray(ensembles, np.float64)
  members = np.moveaxis(ensembles[:, :, first:], 1, 0)  # [M, K, T', ...]
  target = truth[:, first:]
  mean = members.mean(0)
  w = None if weights is None else np.asarray(weights)[..., None]
  spatial = tuple(range(2, truth.ndim))
  out = {
      "rmse": float(metrics.rmse(mean, target, weights=w)),
      "crps": float(metrics.crps_fair(members, target, weights=w)),
      "spread_skill": float(metrics.spread_skill_ratio(members, target,
                                                       weights=w)),
      "rmse_per_time": np.asarray(metrics.rmse(
          ensembles.mean(1), truth, weights=w, axes=(0,) + spatial)).tolist(),
  }
  # DAPPER's rmse.a / spread.a: the root per trajectory and time over space
  # and channels, then the mean over trajectories and times t > B.
  out["rmse_a"] = float(np.mean(metrics.rmse(mean, target, weights=w,
                                             axes=spatial)))
  if members.shape[0] >= 2:
    out["spread_a"] = float(np.mean(np.sqrt(metrics.ensemble_variance(
        members, weights=w, axes=spatial))))
  if channels:
    per_point = tuple(range(truth.ndim - 1))  # all but the channel
    rmse_c = metrics.rmse(mean, target, weights=w, axes=per_point)
    crps_c = metrics.crps_fair(members, target, weights=w, axes=per_point)
    std = (np.ones(len(channels)) if channel_std is None
           else np.asarray(channel_std, np.float64))
    out["per_channel"] = {c: {"rmse": float(rmse_c[i] * std[i]),
                              "crps": float(crps_c[i] * std[i])}
                          for i, c in enumerate(channels)}
  return out


def ratio(numerator: float | None, denominator: float | None
          ) -> float | None:
  """numerator / denominator, None when either is missing or the
  denominator is not > 0."""
  if numerator is None or denominator is None or not denominator > 0:
    return None
  return numerator / denominator


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]
                   ) -> str:
  """A markdown table; None cells print as "-"."""
  lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for row in rows:
    lines.append("| " + " | ".join("-" if v is None else str(v)
                                   for v in row) + " |")
  return "\n".join(lines)


def csv_text(rows: Sequence[dict]) -> str:
  """CSV of flat rows (the columns: the keys of the rows, in first-seen
  order); None cells are empty."""
  columns = list(dict.fromkeys(k for row in rows for k in row))
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns)
  writer.writeheader()
  for row in rows:
    writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
  return buffer.getvalue()


def write_report(out_dir, name: str, results: dict, rows: Sequence[dict],
                 markdown: str, command: str | Sequence[str] | None = None,
                 title: str | None = None, publish=None) -> dict[str, Path]:
  """Writes NAME.json (results, strict JSON), NAME.csv (rows) and NAME.md:
  the markdown under the provenance header (`provenance.with_header`:
  command, date, machine, versions, commit; command None = sys.argv).

  publish: optional path (docs/results/..., `provenance.publish_path`) that
    gets the same NAME.md text as well (key "published").
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  texts = {"json": to_strict_json(results, indent=1), "csv": csv_text(rows),
           "markdown": provenance.with_header(markdown, command, title)}
  suffix = {"json": ".json", "csv": ".csv", "markdown": ".md"}
  paths = {kind: atomic_write(out_dir / f"{name}{suffix[kind]}",
                              lambda f, t=text: f.write(t.encode()))
           for kind, text in texts.items()}
  if publish is not None:
    paths["published"] = atomic_write(
        publish, lambda f: f.write(texts["markdown"].encode()))
  return paths
