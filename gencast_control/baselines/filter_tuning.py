"""The classical filters' tuned settings, chosen on the validation split.

`benchmarks/tune_filters.py` runs every (localisation radius, inflation) of
a grid for each config, method ("letkf", "letks" with the true solver;
"letkf_ardm", "letks_ardm" with the shipped ARDM), start ("truth", "cold"),
ensemble size M and observation regime on VALIDATION trajectories (the key
of `experiment.simulate_splits`'s validation split, never the benchmark's
test truth; cold starts from climatological states of their own seed) and
keeps the pair with the lowest rmse.a (DAPPER's time-mean analysis RMSE
after a burn-in, `engine.score`); where that pair lies on the grid's edge
the grid is extended outward (`grid_search`), so a tuned setting is not an
artefact of where the grid stopped. The result, with every grid point's score
and the command that measured it, is TUNED_FILE; `tuned_options` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

TUNED_FILE = (Path(__file__).resolve().parent.parent / "checkpoints"
              / "filters_tuned.json")
TUNED_FIELDS = ("localization_radius", "inflation")
FIXED_FIELDS = ("lag", "initial_std")  # must match the run's
# Natural ends of the axes: a Gaspari-Cohn half-width of 0.5 grid points
# gives the neighbours weight 0 (only the point itself is updated), and an
# inflation of 1 is none. The radius ends at the domain's side N (on a
# periodic domain a taper of half-width N keeps weight above 0.45 at every
# distance: little localisation is left).
RADIUS_MIN = 0.5
INFLATION_MIN = 1.0


def fixed_options(options: dict) -> dict:
  """What a tuned setting holds fixed: FIXED_FIELDS and, for a filter on
  an ARDM (options["model"]), the ARDM's fingerprint: settings tuned for
  one model are not used with another."""
  fixed = {k: options.get(k) for k in FIXED_FIELDS}
  if options.get("model") is not None:
    fixed["model"] = options["model"].fingerprint
  return fixed


def entry_key(method: str, start: str, ensemble_size: int, num_steps: int,
              regime: str) -> str:
  """The key of one tuned setting in TUNED_FILE's config section."""
  return f"{method}/{start}/M{ensemble_size}/T{num_steps}/{regime}"


def load_tuning(path=None) -> dict:
  """{config name: {entry_key: entry}} of the tuning file (default
  TUNED_FILE; {} without one)."""
  path = Path(TUNED_FILE if path is None else path)
  if not path.exists():
    return {}
  with open(path) as f:
    return json.load(f).get("configs", {})


def tuned_options(config_name: str, method: str, start: str,
                  ensemble_size: int, num_steps: int, regime: str,
                  options: dict, path=None) -> dict | None:
  """{localization_radius, inflation} chosen on validation for this
  setting, or None when it was not tuned, or tuned with another lag,
  initial spread or ARDM than `options` (the method's other options) hold
  (`fixed_options`)."""
  entry = load_tuning(path).get(config_name, {}).get(
      entry_key(method, start, ensemble_size, num_steps, regime))
  if entry is None or entry["options"] != fixed_options(options):
    return None
  return {k: entry["best"][k] for k in TUNED_FIELDS}


def outward_steps(axes: dict, best: dict, radius_max: float) -> list:
  """[(field, value)] that extend `axes` ({field: sorted values}) past each
  end that `best` (a grid point) lies on: the radius halves or doubles, the
  inflation's excess over 1 halves (to 1 from 1.05 or less) or doubles
  (at least +0.05); an axis stops at its natural ends (RADIUS_MIN,
  radius_max, INFLATION_MIN)."""
  steps = []
  radius, inflation = (best[f] for f in TUNED_FIELDS)
  radii, inflations = (axes[f] for f in TUNED_FIELDS)
  if radius == radii[0] and radius > RADIUS_MIN:
    steps.append(("localization_radius", max(radius / 2, RADIUS_MIN)))
  if radius == radii[-1] and radius < radius_max:
    steps.append(("localization_radius", min(2 * radius, radius_max)))
  if inflation == inflations[0] and inflation > INFLATION_MIN:
    steps.append(("inflation", INFLATION_MIN if inflation <= 1.05
                  else round(1 + (inflation - 1) / 2, 4)))
  if inflation == inflations[-1]:
    steps.append(("inflation", round(1 + max(2 * (inflation - 1), 0.05), 4)))
  return steps


def check_reproduces(evaluate: Callable[[float, float], dict], point: dict,
                     rtol: float = 1e-4) -> None:
  """Runs a recorded grid point again; a ValueError if its rmse.a moved."""
  now = evaluate(point["localization_radius"], point["inflation"])["rmse_a"]
  if now is None or abs(now - point["rmse_a"]) > rtol * point["rmse_a"]:
    raise ValueError(
        f"the recorded point (radius {point['localization_radius']:g},"
        f" inflation {point['inflation']:g}) scores rmse.a {now} now,"
        f" {point['rmse_a']:.6g} when recorded: the code or the data changed"
        " since, so its grid cannot be extended (retune it with --replace)")


def grid_search(evaluate: Callable[[float, float], dict], radii, inflations,
                radius_max: float, max_extensions: int = 3,
                scored=()) -> dict:
  """The (radius, inflation) with the lowest rmse.a, by a grid search that
  follows the minimum outward.

  Every point of radii x inflations is scored (`evaluate(radius,
  inflation)` returns {"rmse_a": float or None for a diverged run, ...});
  while the best point lies on an end of an axis that is not its natural
  end (`outward_steps`), that axis gets one more value past the end and the
  new points are scored, at most `max_extensions` times. Points in `scored`
  (earlier results of the same setting) are reused, not rerun; before the
  first new point, their best is run again, and a ValueError says so if it
  no longer scores what was recorded (the code or data changed since:
  mixing the two would compare unlike runs).

  Returns {"best": point, "grid": every point scored, "at_edge": the
  [field, "min"|"max"] ends the best point still lies on after the last
  extension (natural ends excluded)}."""
  if max_extensions < 0:
    raise ValueError(f"max_extensions must be >= 0, got {max_extensions}")
  points = {(s["localization_radius"], s["inflation"]): s for s in scored}
  recorded = [s for s in scored if s["rmse_a"] is not None]
  axes = {"localization_radius": sorted({*radii, *(r for r, _ in points)}),
          "inflation": sorted({*inflations, *(i for _, i in points)})}
  for extension in range(max_extensions + 1):
    for r in axes["localization_radius"]:
      for i in axes["inflation"]:
        if (r, i) not in points:
          if recorded:
            check_reproduces(evaluate, min(recorded,
                                           key=lambda s: s["rmse_a"]))
            recorded = []
          points[(r, i)] = {"localization_radius": r, "inflation": i,
                            **evaluate(r, i)}
    finite = [s for s in points.values() if s["rmse_a"] is not None]
    if not finite:
      raise ValueError("the filter diverged at every grid point")
    best = min(finite, key=lambda s: s["rmse_a"])
    steps = outward_steps(axes, best, radius_max)
    if not steps or extension == max_extensions:
      break
    for field, value in steps:
      axes[field] = sorted({*axes[field], value})
  at_edge = [[f, "min" if v < best[f] else "max"] for f, v in steps]
  return {"best": best, "grid": sorted(
      points.values(), key=lambda s: (s["localization_radius"],
                                      s["inflation"])), "at_edge": at_edge}
