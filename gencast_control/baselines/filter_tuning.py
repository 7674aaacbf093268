"""The classical filters' tuned settings, chosen on the validation split.

`benchmarks/tune_filters.py` runs every (localisation radius, inflation) of
a grid for each config, method ("letkf", "letks" with the true solver;
"letkf_ardm", "letks_ardm" with the shipped ARDM), start ("truth", "cold"),
ensemble size M and observation regime on VALIDATION trajectories (the key
of `experiment.simulate_splits`'s validation split, never the benchmark's
test truth; cold starts from climatological states of their own seed) and
keeps the pair with the lowest rmse.a (DAPPER's time-mean analysis RMSE
after a burn-in, `engine.score`). The result, with every grid point's score
and the command that measured it, is TUNED_FILE; `tuned_options` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

TUNED_FILE = (Path(__file__).resolve().parent.parent / "checkpoints"
              / "filters_tuned.json")
TUNED_FIELDS = ("localization_radius", "inflation")
FIXED_FIELDS = ("lag", "initial_std")  # must match the run's


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
