"""Model times: floats for the PDE systems, datetimes for weather data.

A run starts at t_0 and advances t_k = t_0 + k dt. For the PDE systems t and
dt are floats (model time units); for weather models t is a numpy datetime64
(naive UTC) and dt a timedelta64 (GenCast: 12 h). Users give times as they
have them (floats, datetime64, ISO strings, pandas Timestamps); `as_time`
turns one into the model's kind, and every check names the offending time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

Time = Any  # float or np.datetime64
TimeStep = Any  # float or np.timedelta64


def is_datetime(values) -> bool:
  return np.issubdtype(np.asarray(values).dtype, np.datetime64)


def as_time(value, what: str = "time") -> Time:
  """One time as float64 or datetime64[ns]: numbers stay numbers; strings,
  Timestamps, datetimes and datetime64 become naive-UTC datetime64[ns]."""
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{what} must be a number or a date, got {value!r}")
  if isinstance(value, (int, float, np.integer, np.floating)) and not \
      isinstance(value, (np.timedelta64, np.datetime64)):
    return np.float64(value)
  try:
    stamp = pd.Timestamp(value)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{what} {value!r} is neither a number nor a date") from e
  if stamp is pd.NaT:
    raise ValueError(f"{what} is missing (NaT)")
  if stamp.tzinfo is not None:
    stamp = stamp.tz_convert("UTC").tz_localize(None)
  return np.datetime64(stamp.to_datetime64(), "ns")


def as_timestep(value, what: str = "dt") -> TimeStep:
  """A positive step: a float, or a timedelta (timedelta64, pandas or
  datetime.timedelta, or a string such as "12h")."""
  if isinstance(value, (int, float, np.integer, np.floating)) and not \
      isinstance(value, (bool, np.bool_, np.timedelta64)):
    if not np.isfinite(value) or value <= 0:
      raise ValueError(f"{what} must be positive, got {value!r}")
    return np.float64(value)
  try:
    delta = pd.Timedelta(value)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{what} {value!r} is neither a number nor a time"
                     " step such as '12h'") from e
  if delta is pd.NaT or delta <= pd.Timedelta(0):
    raise ValueError(f"{what} must be a positive time step, got {value!r}")
  return np.timedelta64(delta.to_timedelta64(), "ns")


def format_time(t) -> str:
  if is_datetime(t):
    return str(np.datetime_as_string(np.datetime64(t, "s")))
  return f"{float(t):g}"


def _check_kinds(times, start, step, what):
  dates = is_datetime(times)
  if dates != is_datetime(start):
    raise ValueError(
        f"{what} are {'dates' if dates else 'model times (numbers)'} but the"
        f" run starts at {format_time(start)}: give the initial state a"
        f" {'datetime' if dates else 'numeric'} `time` coordinate or `start`")
  if dates != isinstance(step, np.timedelta64):
    raise ValueError(f"{what} are {'dates' if dates else 'numbers'} but the"
                     f" model's time step is {step!r}")


def steps_between(times, start: Time, step: TimeStep,
                  what: str = "observation times") -> np.ndarray:
  """k with times = t_0 + k dt (ints); ValueError naming the first time that
  is not a model time."""
  times = np.asarray(times)
  _check_kinds(times, start, step, what)
  k = (times - start) / step
  k = np.asarray(k, np.float64)
  off = np.abs(k - np.round(k)) > 1e-6
  if off.any():
    bad = times[np.argmax(off)]
    raise ValueError(f"{what[:-1]} {format_time(bad)} is not a model time"
                     f" t_0 + k dt (t_0 = {format_time(start)}, dt ="
                     f" {format_step(step)})")
  return np.round(k).astype(np.int64)


def format_step(step) -> str:
  """A time step as users read it: "0 days 12:00:00" or "0.5"."""
  if isinstance(step, np.timedelta64):
    return str(pd.Timedelta(step))
  return f"{float(step):g}"


def same_step(a, b) -> bool | None:
  """Whether two time steps are equal (floats to 1e-9 relative); None when
  one is a number and the other a timedelta."""
  if isinstance(a, np.timedelta64) != isinstance(b, np.timedelta64):
    return None
  if isinstance(a, np.timedelta64):
    return bool(np.timedelta64(a, "ns") == np.timedelta64(b, "ns"))
  return bool(abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)),
                                                      abs(float(b))))


def run_times(start: Time, step: TimeStep, observation_times,
              num_steps: int | None = None) -> np.ndarray:
  """t_0 + k dt, k = 0..T; T defaults to the last observation's step.
  Observations at or before t_0 are not assimilated (a cycled run)."""
  k = steps_between(observation_times, start, step)
  k = k[k > 0]
  if not k.size:
    raise ValueError(f"no observation lies after the run's start t_0 ="
                     f" {format_time(start)}: no overlap between the"
                     " observation times and the run")
  num_steps = int(k.max()) if num_steps is None else int(num_steps)
  if num_steps < 1:
    raise ValueError(f"the run needs >= 1 step, got {num_steps}")
  return start + step * np.arange(num_steps + 1)


def check_time_axis(times, step: TimeStep | None, what: str) -> None:
  """Strictly increasing, no repeated time, and (with a step) regular at the
  model step: ValueError naming the first repeat or gap."""
  times = np.asarray(times)
  if times.size < 2:
    return
  diffs = np.diff(times)
  zero = diffs.dtype.type(0)
  if (diffs == zero).any():
    i = int(np.argmax(diffs == zero))
    raise ValueError(f"{what}: time {format_time(times[i])} is repeated")
  if (diffs < zero).any():
    i = int(np.argmax(diffs < zero))
    raise ValueError(f"{what}: times are not increasing at"
                     f" {format_time(times[i + 1])}")
  if step is not None:
    steps = np.asarray(diffs / step, np.float64)
    off = np.abs(steps - 1.0) > 1e-6
    if off.any():
      i = int(np.argmax(off))
      raise ValueError(f"{what}: the step from {format_time(times[i])} to"
                       f" {format_time(times[i + 1])} is not the model step"
                       f" {format_step(step)}")
