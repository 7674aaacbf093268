"""The systems: built-in simulators, their registry and the experiments on them.

ks (Kuramoto-Sivashinsky), kolmogorov (2-D Kolmogorov flow), etdrk4 (their
shared time stepper), held_suarez (the Held-Suarez atmosphere with dinosaur),
registry (the System protocol: what each system is), experiment
(ExperimentConfig and the data step of each system), pipeline (the
experiment's files: simulate, splits, training steps, checkpoints), truth
(held-out truth and cold starts).
"""

import math


def check_time_steps(solver_dt: float, model_dt: float) -> None:
  """ValueError unless both steps are finite, > 0 and model_dt / solver_dt is
  a positive integer (the solver steps per model step)."""
  for name, value in (("solver_dt", solver_dt), ("model_dt", model_dt)):
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f"{name} must be finite and > 0, got {value!r}")
  ratio = model_dt / solver_dt
  if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio) or round(ratio) < 1:
    raise ValueError(f"model_dt ({model_dt}) must be an integer multiple of"
                     f" solver_dt ({solver_dt})")
