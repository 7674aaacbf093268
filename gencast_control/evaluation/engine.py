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
[K, T+1, *spatial, C], with optional spatial weights w (latitude area
weights on a lat/lon grid, WeatherBench2's; uniform otherwise), <.> the
w-weighted mean, xbar the ensemble mean, s^2 the unbiased member variance
(M >= 2). Pooled scores take one mean over trajectories, the scored lead
times t = B+1..T (t = 0 is the given start, B the burn-in, default 0),
space and channels, then one root or ratio:

  rmse          pooled: sqrt( <(xbar - y)^2> )
  crps          pooled: <fair CRPS> (Ferro 2014, `metrics.crps_fair`)
  spread_skill  pooled: sqrt( (M+1)/M <s^2> / <(xbar - y)^2> ) (1 = reliable)
  rmse_a        DAPPER's rmse.a: the mean over trajectories and t = B+1..T
                of sqrt( <(xbar - y)^2> over space and channels )
  spread_a      DAPPER's spread.a: the same mean of sqrt( <s^2> )
  rank_histogram
                frequencies [M+1] of the truth's rank #{m : x_m < y} (ties
                broken at random, `metrics.rank_histogram`) over the points
                of t = B+1..T, each point counting w; flat 1/(M+1) for a
                reliable ensemble, U-shaped for an under-dispersive one;
                None where a value is not finite

Per lead time, over t = 0..T (one value per t, the mean <.>_t over
trajectories, space and channels at that t; the burn-in is not left out):

  rmse_per_time          sqrt( <(xbar - y)^2>_t )
  crps_per_time          <fair CRPS>_t
  spread_per_time        sqrt( <s^2>_t )
  spread_skill_per_time  sqrt( (M+1)/M ) spread_per_time / rmse_per_time
                         (NaN where both are 0, e.g. t = 0 of a true start)
  rmse_per_trajectory_time
                         [K][T+1]: sqrt( <(xbar - y)^2>_{k,t} ) of each
                         trajectory k (rmse_per_time is the root of their
                         mean square), so a lead's comparison of two
                         methods can be resampled over trajectories

With channel names, per_channel: RMSE_c and CRPS_c (pooled), times
channel_std[c] (physical units when the states are standardised). With a
`system` of `diagnostics.DIAGNOSTICS` (KS, Kolmogorov) also its
spectrum_error, physics_error, diverged, spectrum and truth_spectrum
(`diagnostics.scores`); other systems (ERA5, Held-Suarez) have none.

Reports: `report_rows` flattens {regime: {method: scores}} into one row per
regime and method (scalar scores, ratios to a reference method, memory,
per-channel scores; methods labelled by METHOD_LABELS), `report_markdown`
prints such rows as one markdown table; `write_report` writes NAME.json
(everything), NAME.csv (the rows) and NAME.md (the markdown under the
provenance header of `provenance`), each atomically; with `publish`,
NAME.md's text also goes to docs/results/ (the commands' --publish).
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
from gencast_control.evaluation import diagnostics, metrics, provenance

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
          channel_std: np.ndarray | None = None,
          system: str | None = None, pde_config=None) -> dict:
  """The scores of the module docstring.

  Args:
    ensembles: [K, M, T+1, *spatial, C], M >= 2.
    truth: [K, T+1, *spatial, C].
    weights: optional [*spatial] weights of the spatial means.
    burn_in: B, lead times 1..B left out of the pooled scores, rmse_a,
      spread_a and the rank histogram.
    channels: names of the C channels; given, adds `per_channel`.
    channel_std: [C] factor of the per-channel scores (default 1).
    system, pde_config: the config's system name and pde section; a system
      of `diagnostics.DIAGNOSTICS` adds its scores.
  """
  truth = np.asarray(truth, np.float64)
  if not 0 <= burn_in < truth.shape[1] - 1:
    raise ValueError(f"burn_in must be in 0..{truth.shape[1] - 2} for"
                     f" {truth.shape[1] - 1} steps, got {burn_in}")
  first = burn_in + 1
  every = np.moveaxis(np.asarray(ensembles, np.float64), 1, 0)  # [M, K, ...]
  members, target = every[:, :, first:], truth[:, first:]
  mean = members.mean(0)
  w = None if weights is None else np.asarray(weights)[..., None]
  spatial = tuple(range(2, truth.ndim))
  out = {
      "rmse": float(metrics.rmse(mean, target, weights=w)),
      "crps": float(metrics.crps_fair(members, target, weights=w)),
      "spread_skill": float(metrics.spread_skill_ratio(members, target,
                                                       weights=w)),
      # DAPPER's rmse.a / spread.a: the root per trajectory and time over
      # space and channels, then the mean over trajectories and times t > B.
      "rmse_a": float(np.mean(metrics.rmse(mean, target, weights=w,
                                           axes=spatial))),
      "spread_a": float(np.mean(np.sqrt(metrics.ensemble_variance(
          members, weights=w, axes=spatial)))),
      **per_time(every, truth, w),
      "rank_histogram": rank_frequencies(members, target, w),
  }
  if channels:
    out["per_channel"] = per_channel(members, target, w, channels,
                                     channel_std)
  out.update(diagnostics.scores(ensembles, truth, system, pde_config,
                                burn_in))
  return out


def per_time(members: np.ndarray, truth: np.ndarray,
             w: np.ndarray | None) -> dict[str, list]:
  """The per-lead-time curves of the module docstring, members [M, K, T+1,
  ...], truth [K, T+1, ...], w broadcasting against the truth's [*spatial,
  C]."""
  axes = (0,) + tuple(range(2, truth.ndim))  # all but time
  spatial = tuple(range(2, truth.ndim))  # all but trajectory and time
  mean = members.mean(0)
  with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 at t = 0
    ratio = metrics.spread_skill_ratio(members, truth, weights=w, axes=axes)
  return {
      "rmse_per_time": metrics.rmse(mean, truth, weights=w,
                                    axes=axes).tolist(),
      "crps_per_time": metrics.crps_fair(members, truth, weights=w,
                                         axes=axes).tolist(),
      "spread_per_time": np.sqrt(metrics.ensemble_variance(
          members, weights=w, axes=axes)).tolist(),
      "spread_skill_per_time": ratio.tolist(),
      "rmse_per_trajectory_time": metrics.rmse(
          mean, truth, weights=w, axes=spatial).tolist(),
  }


def rank_frequencies(members: np.ndarray, truth: np.ndarray,
                     w: np.ndarray | None) -> list[float] | None:
  """The truth's rank histogram [M+1] of members [M, ...] as frequencies,
  each point counting its weight w (`metrics.rank_histogram`, ties broken
  with seed 0); None where a value is not finite."""
  if not (np.isfinite(members).all() and np.isfinite(truth).all()):
    return None
  counts = metrics.rank_histogram(members, truth, weights=w)
  return (counts / counts.sum()).tolist()


def per_channel(members: np.ndarray, truth: np.ndarray, w: np.ndarray | None,
                channels: Sequence[str], channel_std: np.ndarray | None
                ) -> dict[str, dict[str, float]]:
  """{channel: {"rmse": RMSE_c s_c, "crps": CRPS_c s_c}}, pooled over all
  but the channel axis of members [M, K, T', ..., C]; s = channel_std (1)."""
  per_point = tuple(range(truth.ndim - 1))  # all but the channel
  rmse_c = metrics.rmse(members.mean(0), truth, weights=w, axes=per_point)
  crps_c = metrics.crps_fair(members, truth, weights=w, axes=per_point)
  std = (np.ones(len(channels)) if channel_std is None
         else np.asarray(channel_std, np.float64))
  return {c: {"rmse": float(rmse_c[i] * std[i]),
              "crps": float(crps_c[i] * std[i])}
          for i, c in enumerate(channels)}


# ------------------------------------------------------------------ reports


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


# Method -> its label in the reports (other methods print as named; a
# method's scores may carry their own "label", e.g. for a setting).
METHOD_LABELS = {"enkf": "enkf (untuned)"}

# The scalar scores of a report row, in column order; those of RATIOS also
# get "{score}_vs_{reference}" = score / the reference method's score.
ROW_SCORES = ("rmse", "rmse_a", "spread_a", "crps", "spread_skill",
              "seconds", "cpu_seconds", "spectrum_error", "physics_error",
              "diverged")
RATIOS = {"rmse": "RMSE", "seconds": "time", "cpu_seconds": "CPU time"}
SHORT_NAMES = {"controlled": "ctrl"}  # of reference methods, in headers


def method_label(method: str) -> str:
  return METHOD_LABELS.get(method, method)


def report_row(scores: dict, reference: dict | None, reference_name: str
               ) -> dict:
  """One method's flat row: the ROW_SCORES it has, each of RATIOS followed
  by its ratio to `reference`'s scores (None without them), XLA's memory
  estimate in bytes (memory_bytes: the total; memory_PART_bytes) and the
  per-channel scores "rmse C", "crps C"."""
  row = {}
  for key in (k for k in ROW_SCORES if k in scores):
    row[key] = scores[key]
    if key in RATIOS:
      row[f"{key}_vs_{reference_name}"] = ratio(
          scores[key], (reference or {}).get(key))
  if "memory" in scores:
    memory = scores["memory"] or {}
    row["memory_bytes"] = memory.get("total")
    row.update({f"memory_{part}_bytes": memory.get(part)
                for part in ("argument", "output", "temp")})
  for channel, s in scores.get("per_channel", {}).items():
    row.update({f"{name} {channel}": s[name] for name in ("rmse", "crps")})
  return row


def report_rows(regimes: dict[str, dict[str, dict]],
                reference: str = "controlled") -> list[dict]:
  """One flat row per regime and method of {regime: {method: scores}}:
  "regime", "method", "label" (the scores' own, else `method_label`), then
  `report_row` with ratios to the method `reference` of the same regime."""
  return [{"regime": regime, "method": method,
           "label": scores.get("label", method_label(method)),
           **report_row(scores, rows.get(reference), reference)}
          for regime, rows in regimes.items()
          for method, scores in rows.items()]


def _number(spec: str, suffix: str = "", scale: float = 1.0
            ) -> Callable[[Any], str]:
  return lambda v: f"{v * scale:{spec}}{suffix}"


# Markdown columns: row key -> (header, format of a value that is not None).
COLUMNS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "regime": ("regime", str),
    "label": ("method", str),
    "rmse": ("RMSE (pooled)", _number(".4f")),
    "rmse_a": ("rmse.a", _number(".4f")),
    "spread_a": ("spread.a", _number(".4f")),
    "crps": ("CRPS (pooled)", _number(".4f")),
    "spread_skill": ("spread/skill (pooled)", _number(".2f")),
    "seconds": ("time [s]", _number(".3f")),
    "cpu_seconds": ("CPU time [s]", _number(".3f")),
    "spectrum_error": ("spectrum err", _number(".3f")),
    "physics_error": ("physics err", _number(".3f")),
    "diverged": ("diverged", str),
    "memory_bytes": ("XLA mem [MiB]", _number(".1f", scale=2.0**-20)),
}

# The default columns of `report_markdown`; "{reference}" is filled in.
TABLE_COLUMNS = ("regime", "label", "rmse", "rmse_vs_{reference}", "rmse_a",
                 "spread_a", "seconds", "seconds_vs_{reference}",
                 "cpu_seconds_vs_{reference}", "crps", "spread_skill",
                 "spectrum_error", "physics_error", "diverged",
                 "memory_bytes")

POOLED_NOTE = (
    "Pooled: one mean over trajectories, scored times and grid points, then"
    " one root (RMSE) or ratio (spread/skill). rmse.a, spread.a: DAPPER's"
    " time means over the scored times of the per-time spatial RMSE of the"
    " ensemble mean and of the ensemble spread. Ratios: method / reference"
    " method.")


def column(key: str) -> tuple[str, Callable[[Any], str]]:
  """(header, format) of a row key: COLUMNS, a ratio "{score}_vs_{method}"
  ("RMSE / ctrl") or a per-channel score "rmse C" / "crps C"."""
  if key in COLUMNS:
    return COLUMNS[key]
  score_name, _, reference = key.partition("_vs_")
  if reference and score_name in RATIOS:
    return (f"{RATIOS[score_name]} / {SHORT_NAMES.get(reference, reference)}",
            _number(".2f", "x"))
  name, _, channel = key.partition(" ")
  if channel and name in ("rmse", "crps"):
    return f"{name.upper()} {channel}", _number(".4g")
  raise ValueError(f"no report column for {key!r}")


def report_markdown(rows: Sequence[dict],
                    columns: Sequence[str] = TABLE_COLUMNS,
                    reference: str = "controlled") -> str:
  """The markdown table of `report_rows` (None prints "-") and POOLED_NOTE.

  columns: row keys ("{reference}" filled in); those no row has are left
  out (e.g. the diagnostics of a system without them).
  """
  keys = [c.format(reference=reference) for c in columns]
  keys = [k for k in keys if any(k in row for row in rows)]
  formats = [column(k) for k in keys]
  table = markdown_table(
      [header for header, _ in formats],
      ([None if row.get(k) is None else fmt(row[k])
        for k, (_, fmt) in zip(keys, formats)] for row in rows))
  return f"{table}\n\n{POOLED_NOTE}"


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
