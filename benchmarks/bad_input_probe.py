"""Held-out probe of bad inputs and faults: what a new user's files do.

Builds a small valid world in a temporary folder (no network):

  ks     the shipped KS model and controller (config ks, 128 points): a
         truth, an initial state, a station CSV (off the grid) and a gridded
         observation NetCDF;
  toy    tests/toy_ardm.py, a model that is not a grid model (lat/lon
         sphere, levels, 6 h datetime steps) with a controller: an initial
         state, a station CSV with ISO dates, a gridded NetCDF;
  tiny   tiny KS training splits, an ARDM and a controller trained by the
         CLI (tests/conftest.py's sizes);
  custom a two-variable system (h, v on a dim s, config custom) with its
         ARDM and controller;

runs the valid baselines once, then 295 generated mutations of those files
and command lines (flipped, scaled and shifted coordinates, permuted and
renamed variables, dropped, repeated, unsorted and gapped times,
blank cells and strings in each column, wrong dtypes and file kinds, NaN/inf,
bad error stds, times off the model step, dates where numbers are expected
and the other way round, out-of-domain positions, wrong member counts,
existing outputs, concurrent runs, signals, bad Python API calls). CLI cases
run in process through `gencast_control.cli.main(argv)` with stderr captured;
those that need a second process or a signal run `python -m
gencast_control.cli`.

Each case is classified automatically:

  GOOD  refused with exit code 2 and one error line that names the problem
        (one of the case's keywords), or accepted with the result the input
        means (a harmless mutation: equal to the baseline run);
  POOR  refused with a traceback or an uncaught exception, several error
        lines, a message naming none of the keywords, only after the work
        was done, or a harmless input refused; a flag silently ignored;
  BAD   accepted with a result that differs from what the input means,
        finished work or an input changed, or files left by a failed run.

Usage:
    python benchmarks/bad_input_probe.py [--out probe.md] [--publish] [--overwrite]
                                # every case: ~4 min on 2 CPU cores
    python benchmarks/bad_input_probe.py --only 'ks-csv|api-'   # a subset
    python benchmarks/bad_input_probe.py --list                 # the cases
    python benchmarks/bad_input_probe.py --root DIR  # keep the world in DIR
                                                     # (reused when built)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

# As the test suite (tests/conftest.py): CPU, the persistent compilation
# cache, XLA:CPU at -O0 (these tiny programs compile far longer than they
# run). Subprocesses inherit the same settings, so their results are
# comparable bit for bit with the in-process ones.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"gencast-control-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [
      os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]))
os.environ.pop("GENCAST_CONTROL_TRACEBACK", None)
os.environ.setdefault("TQDM_MININTERVAL", "1")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

GOOD, POOR, BAD = "GOOD", "POOR", "BAD"
warnings.filterwarnings("ignore", module="zarr")

# tests/conftest.py's tiny KS run through the CLI (seconds per step).
TINY = ("--set pde.num_points=32 --set pde.domain_length=22.0"
        " --set ardm.state_shape=(32,1) --set ardm.network.width=8"
        " --set ardm.network.num_blocks=1 --set ardm.sampler.method=euler"
        " --set ardm.sampler.num_steps=2"
        " --set controller.network.width=8"
        " --set controller.network.num_blocks=1"
        " --set data.num_train=2"
        " --set data.num_validation=1 --set data.num_test=1"
        " --set data.num_steps=24 --set data.burn_in_steps=10"
        " --set ardm_training.num_steps=2 --set ardm_training.batch_size=2"
        " --set controller_training.num_steps=2"
        " --set controller_training.batch_size=2"
        " --set controller_training.spinup=0 --set controller_training.window=1"
        " --set controller_training.validate_every=0"
        " --set assimilation.num_steps=4 --set assimilation.ensemble_size=2"
        " --set assimilation.num_trajectories=1").split()
# A training run long enough to be interrupted (~600 steps, a state every 50).
LONG = ["--set", "ardm_training.num_steps=600", "--set",
        "ardm_training.checkpoint_every=50", "--set",
        "ardm_training.log_every=50"]
CUSTOM = ["--config", "custom"] + [
    arg for item in ("ardm.state_shape=(16, 2)", "ardm.network.width=8",
                     "ardm.network.num_blocks=1", "ardm.sampler.method=euler",
                     "ardm.sampler.num_steps=2", "controller.network.width=8",
                     "ardm_training.num_steps=2", "ardm_training.batch_size=2",
                     "controller_training.num_steps=2",
                     "controller_training.batch_size=2",
                     "controller_training.spinup=0",
                     "controller_training.window=1",
                     "controller_training.validate_every=0")
    for arg in ("--set", item)]
KS_STEPS = 4
TOY_STEPS = 4
TOY_START = np.datetime64("2024-01-01T00:00", "ns")
SIX_HOURS = np.timedelta64(6, "h")
TOY_ARDM = "tests.toy_ardm:make_model"


# ------------------------------------------------------------------ running


@dataclasses.dataclass
class Run:
  """One command: exit code (None: an uncaught exception), stderr, time."""
  code: int | None
  err: str
  exc: BaseException | None = None
  seconds: float = 0.0


def run_cli(argv: list[str]) -> Run:
  """gencast_control.cli.main(argv) in process, stdout and stderr captured."""
  from gencast_control import cli
  err, out = io.StringIO(), io.StringIO()
  t0 = time.perf_counter()
  code, exc = None, None
  try:
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
      code = cli.main([str(a) for a in argv])
  except SystemExit as e:  # argparse
    code = e.code if isinstance(e.code, int) else 2
  except KeyboardInterrupt:
    raise
  except BaseException as e:  # noqa: BLE001 - the probe records it
    exc = e
    err.write(traceback.format_exc())
  return Run(code, err.getvalue(), exc, time.perf_counter() - t0)


def error_lines(err: str) -> list[str]:
  return [l.strip() for l in err.replace("\r", "\n").splitlines()
          if "error:" in l or "Traceback" in l]


def progress_before_error(err: str) -> bool:
  """Whether a progress bar (work done) precedes the error line."""
  text = err.replace("\r", "\n")
  at = text.find("error:")
  head = text if at < 0 else text[:at]
  return bool(re.search(r"\d+/\d+ \[", head))


def names_one(message: str, keywords) -> bool:
  for k in keywords:
    if k.startswith("re:"):
      if re.search(k[3:], message, re.IGNORECASE):
        return True
    elif len(k) <= 2 and k.isalnum():
      if re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])",
                   message):
        return True
    elif k.lower() in message.lower():
      return True
  return False


ROOT: list[str] = []  # the probe's work folder, left out of messages


def strip_root(text: str) -> str:
  """Paths under the probe's folder shortened to their names (and case ids
  kept out of keyword matches)."""
  for root in ROOT:
    text = re.sub(re.escape(root) + r"/(?:cases/c\d+/|world/base/|world/|"
                  r"refs/[^/\s]+/)?", "", text)
  return text


def short(text: str, n: int = 220) -> str:
  text = strip_root(" ".join(str(text).split()))
  text = re.sub(r"^gencast-control [\w-]+(?: \w+)?: error: ", "", text)
  return text if len(text) <= n else text[:n - 3] + "..."


def file_hashes(root: Path) -> dict[str, str]:
  out = {}
  if root.is_file():
    return {str(root): hashlib.sha256(root.read_bytes()).hexdigest()}
  for p in sorted(root.rglob("*")):
    if p.is_file() and not p.name.startswith(".") and ".work" not in str(p):
      out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
  return out


def changed(before: dict[str, str]) -> list[str]:
  out = []
  for path, digest in before.items():
    p = Path(path)
    if not p.exists():
      out.append(f"{p.name} deleted")
    elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
      out.append(f"{p.name} changed")
  return out


def result_files(folder: Path) -> list[str]:
  if not folder.is_dir():
    return []
  return sorted(p.name for p in folder.iterdir()
                if p.is_file() and p.name != ".lock")


# ---------------------------------------------------------- comparisons


def diff_datasets(a: xr.Dataset, b: xr.Dataset, what: str,
                  rtol: float = 1e-4, atol: float = 1e-4) -> str | None:
  if set(a.data_vars) != set(b.data_vars):
    return f"{what}: variables {sorted(a.data_vars)} vs {sorted(b.data_vars)}"
  for v in b.data_vars:
    if a[v].dims != b[v].dims:
      return f"{what}: {v} dims {a[v].dims} vs {b[v].dims}"
    for d in b[v].dims:
      ca, cb = np.asarray(a[d].values), np.asarray(b[d].values)
      if ca.shape != cb.shape or not (
          np.array_equal(ca, cb) if ca.dtype.kind in "MmOUS"
          else np.allclose(ca, cb, rtol=1e-6, atol=1e-6)):
        return f"{what}: {d} coordinate differs from the baseline's"
    x, y = np.asarray(a[v].values), np.asarray(b[v].values)
    if x.dtype.kind in "fc" and not np.allclose(x, y, rtol=rtol, atol=atol,
                                                equal_nan=True):
      worst = float(np.nanmax(np.abs(x - y)))
      return f"{what}: {v} differs from the baseline (max |diff| {worst:.3g})"
  return None


def diff_numbers(a, b, where: str) -> str | None:
  if isinstance(a, dict) and isinstance(b, dict):
    for k in b:
      if k not in a:
        return f"{where}.{k} missing"
      d = diff_numbers(a[k], b[k], f"{where}.{k}")
      if d:
        return d
    return None
  if isinstance(b, (int, float)) and isinstance(a, (int, float)):
    if not np.isclose(a, b, rtol=1e-4, atol=1e-5):
      return f"{where}: {a:.5g} vs baseline {b:.5g}"
  return None


def diff_runs(out: Path, base: Path) -> str | None:
  """None when the assimilate outputs in `out` equal those in `base`."""
  for name in ("analysis.nc", "background.nc"):
    if not (out / name).exists():
      return f"no {name} written"
    with xr.open_dataset(out / name) as a, xr.open_dataset(base / name) as b:
      d = diff_datasets(a.load(), b.load(), name)
    if d:
      return d
  mine = json.loads((out / "monitoring.json").read_text())
  theirs = json.loads((base / "monitoring.json").read_text())
  for key in ("monitoring", "scores"):
    d = diff_numbers(mine.get(key, {}), theirs.get(key, {}), key)
    if d:
      return "monitoring.json " + d
  return None


def diff_checkpoints(a: Path, b: Path) -> str | None:
  if not Path(a).exists():
    return f"no {Path(a).name} written"
  with np.load(a) as x, np.load(b) as y:
    keys = sorted(k for k in y.files if k.startswith("params/"))
    if sorted(k for k in x.files if k.startswith("params/")) != keys:
      return "other parameter names"
    for k in keys:
      if x[k].shape != y[k].shape or not np.allclose(x[k], y[k], rtol=1e-5,
                                                     atol=1e-6):
        return f"parameter {k} differs from the baseline's"
  return None


def recorded_step(path: Path, step) -> str | None:
  """None when the ARDM checkpoint records the model step `step`."""
  from gencast_control.api import load_model
  layout = load_model(str(path)).layout
  if layout is None:
    return "the checkpoint records no time step"
  have = layout.timestep
  if type(have) is not type(step) or have != step:
    return f"the checkpoint records the step {have!r}, the data's is {step!r}"
  return None


def diff_observations(a, b) -> str | None:
  """Two ObservationSets: same times, grid values, mask and stds."""
  if len(a.times) != len(b.times) or not np.array_equal(a.times, b.times):
    return "other run times"
  channels = [tuple(c) for c in a.layout.channels]
  if sorted(channels, key=str) != sorted(map(tuple, b.layout.channels),
                                         key=str):
    return f"other channels {channels}"
  order = [channels.index(tuple(c)) for c in b.layout.channels]  # by name
  mask = np.asarray(b.stream.mask) > 0
  for name in ("values", "mask", "std"):
    if name == "std":
      x = np.where(mask, np.asarray(a.stream.entry_std())[..., order], 0)
      y = np.where(mask, np.asarray(b.stream.entry_std()), 0)
    else:
      x = np.asarray(getattr(a.stream, name))[..., order]
      y = np.asarray(getattr(b.stream, name))
    if x.shape != y.shape or not np.allclose(
        np.nan_to_num(x), np.nan_to_num(y), atol=1e-6):
      return f"other observation {name} on the grid"
  if (a.points is None) != (b.points is None):
    return "point observations read as gridded or the other way round"
  if b.points is not None:
    from gencast_control import api
    rng = np.random.default_rng(0)
    states = rng.normal(size=(len(b.times),) + tuple(b.layout.shape))
    residual = {}
    for key, o in (("a", a), ("b", b)):
      pts = o.points[o.points["step"] > 0]
      h = np.asarray(api.observation_operator(o, states))
      residual[key] = np.sort(pts["value"].values - h)
    if residual["a"].shape != residual["b"].shape:
      return (f"{len(residual['a'])} point observations in the run, the"
              f" baseline has {len(residual['b'])}")
    if not np.allclose(residual["a"], residual["b"], atol=1e-5):
      return "the points lie elsewhere or hold other values (y - H(x))"
  return None


def diff_states(a: tuple, b: tuple) -> str | None:
  """(start time, initial ensemble array) pairs."""
  if not np.array_equal(np.asarray(a[0]), np.asarray(b[0])):
    return f"t_0 = {a[0]} instead of {b[0]}"
  if a[1].shape != b[1].shape or not np.allclose(a[1], b[1], atol=1e-6,
                                                  equal_nan=True):
    return "other initial members"
  return None


# ---------------------------------------------------------------- the world


class World:
  """The valid files, the baselines and (lazily) the API's objects."""

  def __init__(self, root: Path):
    self.root = root
    self.w = root / "world"
    self.refs: dict[str, Any] = {}

  def p(self, name: str) -> Path:
    return self.w / name

  # --- building -----------------------------------------------------------

  def build(self, log) -> None:
    ready = self.w / "READY"
    if ready.exists():
      log(f"world: reusing {self.w}")
      return
    if self.w.exists():
      shutil.rmtree(self.w)
    self.w.mkdir(parents=True)
    t0 = time.perf_counter()
    self._ks_files()
    self._toy_files()
    self._tiny_training(log)
    self._custom(log)
    log(f"world: files and training {time.perf_counter() - t0:.0f} s")
    for name, argv in self.baselines().items():
      run = run_cli(argv)
      if run.code != 0:
        raise SystemExit(f"baseline {name} failed: {short(run.err[-2000:])}")
      log(f"baseline {name}: {run.seconds:.1f} s")
    ready.write_text("ok\n")

  def _ks_files(self) -> None:
    import jax
    from gencast_control.systems.ks import KSConfig, generate_ks_dataset
    ds = generate_ks_dataset(jax.random.PRNGKey(3), 1, KS_STEPS, KSConfig(),
                             burn_in_steps=200)
    truth = ds.isel(trajectory=0, drop=True).load()
    truth.to_netcdf(self.p("ks_truth.nc"))
    truth.isel(time=[0]).to_netcdf(self.p("ks_initial.nc"))
    x = truth["x"].values
    dx = x[1] - x[0]
    rng = np.random.default_rng(0)
    rows = []
    for t in truth["time"].values[1:]:
      u = truth["u"].sel(time=t).values
      for s in x[::10] + 0.3 * dx:  # 13 stations off the grid
        exact = np.interp(s, np.r_[x, x[-1] + dx], np.r_[u, u[0]])
        rows.append({"time": float(t), "x": float(s), "variable": "u",
                     "value": float(exact + 0.1 * rng.normal()),
                     "error_std": 0.1})
    pd.DataFrame(rows).to_csv(self.p("ks_stations.csv"), index=False)
    mask = rng.random(truth["u"].shape) < 0.3
    truth.where(xr.DataArray(mask, dims=truth["u"].dims)).to_netcdf(
        self.p("ks_gridded.nc"))

  def _toy_files(self) -> None:
    import jax
    from gencast_control.core.controller import (ControllerConfig,
                                                 init_controller,
                                                 save_controller)
    from gencast_control.core.networks import ConvNetConfig
    from tests.toy_ardm import LAT, LON, ToyARDM
    model = ToyARDM()
    config = ControllerConfig(horizon=2, network=ConvNetConfig(
        width=4, num_blocks=1), encoding_channels=4)
    params = init_controller(config, model, jax.random.PRNGKey(0))
    params = jax.tree.map(lambda q: q + 0.05 * jax.random.normal(
        jax.random.PRNGKey(1), q.shape), params)
    save_controller(self.p("toy_controller.npz"), params, config, model)
    la, lo = np.meshgrid(np.deg2rad(LAT), np.deg2rad(LON), indexing="ij")
    field = np.cos(la) * np.sin(lo)
    initial = xr.Dataset(
        {"surface_pressure": (("time", "lat", "lon"), field[None]),
         "temperature": (("time", "level", "lat", "lon"),
                         np.stack([field, -field])[None])},
        coords={"time": [TOY_START], "lat": LAT, "lon": LON,
                "level": [500.0, 850.0]})
    initial.to_netcdf(self.p("toy_initial.nc"))
    rng = np.random.default_rng(1)
    rows = []
    for k in range(1, TOY_STEPS + 1):
      when = str(TOY_START + k * SIX_HOURS)[:16] + "Z"
      for lat, lon in ((45.3, 12.0), (-71.0, 355.0), (10.0, 100.0)):
        rows.append({"time": when, "lat": lat, "lon": lon, "level": 850.0,
                     "variable": "temperature", "value": rng.normal(),
                     "error_std": 0.2})
        rows.append({"time": when, "lat": lat, "lon": lon, "level": None,
                     "variable": "surface_pressure", "value": rng.normal(),
                     "error_std": 0.5})
    pd.DataFrame(rows).to_csv(self.p("toy_stations.csv"), index=False)
    times = TOY_START + np.arange(TOY_STEPS + 1) * SIX_HOURS
    shape = (len(times), len(LAT), len(LON))
    keep = rng.random(shape) < 0.3
    sp = np.where(keep, rng.normal(size=shape), np.nan)
    keep2 = rng.random((len(times), 2) + shape[1:]) < 0.3
    temp = np.where(keep2, rng.normal(size=keep2.shape), np.nan)
    xr.Dataset({"surface_pressure": (("time", "lat", "lon"), sp),
                "temperature": (("time", "level", "lat", "lon"), temp)},
               coords={"time": times, "lat": LAT, "lon": LON,
                       "level": [500.0, 850.0]}).to_netcdf(
                           self.p("toy_gridded.nc"))

  def _tiny_training(self, log) -> None:
    d = self.p("D")
    for argv in (["simulate", "--out", d],
                 ["train-ardm", "--data", d, "--out", self.p("A.npz")],
                 ["train-controller", "--data", d, "--ardm", self.p("A.npz"),
                  "--out", self.p("C.npz")]):
      run = run_cli(list(argv) + TINY)
      if run.code != 0:
        raise SystemExit(f"setup {argv[0]} failed: {short(run.err[-2000:])}")
      log(f"tiny {argv[0]}: {run.seconds:.1f} s")

  def _custom(self, log) -> None:
    import jax
    import gencast_control as gc
    from gencast_control.core.config import load_config
    from gencast_control.core.controller import (init_controller,
                                                 save_controller)
    rng = np.random.default_rng(0)
    s = np.arange(16.0)
    phase = rng.uniform(0, 2 * np.pi, (4, 1, 1))
    t = np.arange(20.0)[None, :, None]
    h = np.sin(2 * np.pi * s / 16 + 0.3 * t + phase)
    data = self.p("cust_data")
    data.mkdir()
    for split, sl in (("train", slice(0, 2)), ("validation", slice(2, 3)),
                      ("test", slice(3, 4))):
      xr.Dataset({"h": (("trajectory", "time", "s"), h[sl]),
                  "v": (("trajectory", "time", "s"), np.cos(3 * h[sl]))},
                 coords={"s": s, "time": t[0, :, 0]}).to_netcdf(
                     data / f"{split}.nc")
    run = run_cli(["train-ardm", "--data", data, "--out",
                   self.p("cust_ardm.npz")] + CUSTOM)
    if run.code != 0:
      raise SystemExit(f"setup custom train-ardm failed: {short(run.err)}")
    log(f"custom train-ardm: {run.seconds:.1f} s")
    model = gc.load_model(self.p("cust_ardm.npz"))
    config = load_config("custom", CUSTOM[3::2]).controller
    params = init_controller(config, model, jax.random.PRNGKey(0))
    params = jax.tree.map(lambda q: q + 0.05 * jax.random.normal(
        jax.random.PRNGKey(1), q.shape), params)
    save_controller(self.p("cust_controller.npz"), params, config, model,
                    {"system": "custom"})
    truth = xr.open_dataset(data / "test.nc").isel(trajectory=0,
                                                   drop=True).load()
    truth.isel(time=[0]).to_netcdf(self.p("cust_initial.nc"))
    rows = [{"time": float(k), "s": pos, "variable": v,
             "value": float(truth[v].sel(time=k).interp(s=pos)),
             "error_std": 0.1}
            for k in range(1, 5) for pos in (3.5, 9.2) for v in ("h", "v")]
    pd.DataFrame(rows).to_csv(self.p("cust_stations.csv"), index=False)

  # --- commands -----------------------------------------------------------

  def ks(self, obs=None, initial=None, truth="default", out=None,
         extra=()) -> list:
    argv = ["assimilate", "--ardm", "ks", "--controller", "ks",
            "--members", "2", "--observations",
            obs or self.p("ks_stations.csv"),
            "--initial", initial or self.p("ks_initial.nc")]
    if truth == "default":
      truth = self.p("ks_truth.nc")
    if truth is not None:
      argv += ["--truth", truth]
    return argv + ["--out", out] + list(extra)

  def ks_grid(self, obs=None, initial=None, out=None,
              error_std=("--error-std", "0.1"), extra=()) -> list:
    return (["assimilate", "--ardm", "ks", "--controller", "ks",
             "--members", "2", "--observations",
             obs or self.p("ks_gridded.nc"),
             "--initial", initial or self.p("ks_initial.nc"), "--out", out]
            + list(error_std) + list(extra))

  def toy(self, obs=None, initial=None, out=None, extra=()) -> list:
    return ["assimilate", "--ardm", TOY_ARDM, "--controller",
            self.p("toy_controller.npz"), "--members", "2", "--observations",
            obs or self.p("toy_stations.csv"), "--initial",
            initial or self.p("toy_initial.nc"), "--out", out] + list(extra)

  def toy_grid(self, obs=None, initial=None, out=None,
               error_std=("--error-std", "0.2"), extra=()) -> list:
    return self.toy(obs or self.p("toy_gridded.nc"), initial, out,
                    list(error_std) + list(extra))

  def cust(self, obs=None, initial=None, out=None, extra=()) -> list:
    return (["assimilate", "--ardm", self.p("cust_ardm.npz"), "--controller",
             self.p("cust_controller.npz"), "--members", "2",
             "--observations", obs or self.p("cust_stations.csv"),
             "--initial", initial or self.p("cust_initial.nc"), "--out", out]
            + CUSTOM + list(extra))

  def train_ardm(self, data=None, out=None, extra=()) -> list:
    return (["train-ardm", "--data", data or self.p("D"), "--out", out]
            + TINY + list(extra))

  def baselines(self) -> dict[str, list]:
    b = self.w / "base"
    return {"ks_csv": self.ks(out=b / "ks_csv"),
            "ks_grid": self.ks_grid(out=b / "ks_grid"),
            "toy_csv": self.toy(out=b / "toy_csv"),
            "toy_grid": self.toy_grid(out=b / "toy_grid"),
            "cust_csv": self.cust(out=b / "cust_csv")}

  def base(self, name: str) -> Path:
    return self.w / "base" / name

  # --- lazily loaded inputs and API objects --------------------------------

  @functools.cached_property
  def ks_table(self) -> pd.DataFrame:
    return pd.read_csv(self.p("ks_stations.csv"))

  @functools.cached_property
  def ks_gridded(self) -> xr.Dataset:
    return xr.open_dataset(self.p("ks_gridded.nc")).load()

  @functools.cached_property
  def ks_initial(self) -> xr.Dataset:
    return xr.open_dataset(self.p("ks_initial.nc")).load()

  @functools.cached_property
  def ks_truth(self) -> xr.Dataset:
    return xr.open_dataset(self.p("ks_truth.nc")).load()

  @functools.cached_property
  def toy_table(self) -> pd.DataFrame:
    return pd.read_csv(self.p("toy_stations.csv"))

  @functools.cached_property
  def toy_initial(self) -> xr.Dataset:
    return xr.open_dataset(self.p("toy_initial.nc")).load()

  @functools.cached_property
  def toy_gridded(self) -> xr.Dataset:
    return xr.open_dataset(self.p("toy_gridded.nc")).load()

  @functools.cached_property
  def cust_table(self) -> pd.DataFrame:
    return pd.read_csv(self.p("cust_stations.csv"))

  @functools.cached_property
  def cust_initial(self) -> xr.Dataset:
    return xr.open_dataset(self.p("cust_initial.nc")).load()

  @functools.cached_property
  def ks_model(self):
    import gencast_control as gc
    return gc.load_model("ks")

  @functools.cached_property
  def ks_controller(self):
    import gencast_control as gc
    return gc.load_controller("ks", self.ks_model)

  @functools.cached_property
  def ks_obs(self):
    import gencast_control as gc
    return gc.observations_from_points(self.ks_table, self.ks_model,
                                       self.ks_initial, dt=1.0)

  @functools.cached_property
  def ks_analysis(self) -> xr.Dataset:
    import gencast_control as gc
    return gc.assimilate(self.ks_model, self.ks_controller, self.ks_obs,
                         self.ks_initial, members=2)

  def ks_points(self, path):
    import gencast_control as gc
    return gc.observations_from_points(path, self.ks_model, self.ks_initial,
                                       dt=1.0)

  def ks_grid_obs(self, path=None, error_std=0.1):
    from gencast_control import api
    ds = api.open_dataset(path) if path is not None else self.ks_gridded
    return api.observations_from_dataset(ds, self.ks_model, self.ks_initial,
                                         error_std=error_std, dt=1.0)

  def ks_state(self, path=None):
    from gencast_control import api
    ds = api.open_dataset(path) if path is not None else self.ks_initial
    return (api.start_time(ds),
            api.initial_ensemble(ds, self.ks_obs.layout, 1, 2))

  def toy_points(self, path=None):
    import gencast_control as gc
    return gc.observations_from_points(path or self.p("toy_stations.csv"),
                                       self.toy_model, self.toy_initial)

  def toy_grid_obs(self, path=None, error_std=0.2):
    from gencast_control import api
    ds = api.open_dataset(path) if path is not None else self.toy_gridded
    return api.observations_from_dataset(ds, self.toy_model,
                                         self.toy_initial,
                                         error_std=error_std)

  def toy_state(self, path=None):
    from gencast_control import api
    ds = api.open_dataset(path) if path is not None else self.toy_initial
    return (api.start_time(ds),
            api.initial_ensemble(ds, self.toy_model.layout, 1, 2))

  @functools.cached_property
  def toy_model(self):
    from tests.toy_ardm import ToyARDM
    return ToyARDM()

  @functools.cached_property
  def cust_model(self):
    import gencast_control as gc
    return gc.load_model(self.p("cust_ardm.npz"))

  @functools.cached_property
  def cust_controller(self):
    import gencast_control as gc
    return gc.load_controller(self.p("cust_controller.npz"), self.cust_model)

  def cust_analysis(self, variables) -> xr.Dataset:
    import gencast_control as gc
    obs = gc.observations_from_points(self.cust_table, self.cust_model,
                                      self.cust_initial, variables=variables,
                                      dt=1.0)
    return gc.assimilate(self.cust_model, self.cust_controller, obs,
                         self.cust_initial, members=2)

  def reference(self, key: str, argv: list) -> Path:
    """A reference run (the canonical form of a mutated input), once."""
    if key not in self.refs:
      run = run_cli(argv)
      if run.code != 0:
        raise RuntimeError(f"reference {key} failed: {short(run.err)}")
      self.refs[key] = True
    return Path(argv[argv.index("--out") + 1])

  def training_reference(self) -> Path:
    """The uninterrupted run of the LONG training (for the signal cases)."""
    out = self.root / "refs" / "long" / "a.npz"
    if not out.exists():
      run = run_cli(self.train_ardm(out=out, extra=LONG))
      if run.code != 0:
        raise RuntimeError(f"reference training failed: {short(run.err)}")
    return out


# ---------------------------------------------------------------- the cases


@dataclasses.dataclass
class Case:
  """A probe case.

  id, what: its name and what it feeds.
  argv: (world, case dir) -> the CLI argv (writes the mutated files first);
    for API cases, call: (world, case dir) -> a result (or raises).
  expect: "refuse" (must be refused; accepted is BAD), "equal" (harmless:
    accepted with the baseline's result; refused is POOR), "either"
    (refused naming a keyword, or accepted with the baseline's result),
    "ignored" (must be refused; accepted means a flag or input silently
    ignored: POOR), "accept" (must run; refused is POOR).
  keywords: any of them must appear in the message of a refusal ("re:..."
    a regex; 1-2 letter names match as words).
  compare: (world, case dir, result) -> None if the accepted result is what
    the input means, else how it differs.
  protect: (world, case dir) -> paths whose files must not change.
  special: (world, case dir) -> (class, message): cases with processes and
    signals.
  """
  id: str
  what: str
  argv: Callable | None = None
  expect: str = "refuse"
  keywords: tuple = ()
  compare: Callable | None = None
  protect: Callable | None = None
  call: Callable | None = None
  special: Callable | None = None
  fresh_out: bool = True


def labelled_step(d: Path, step: float) -> str | None:
  """None when the analysis times advance by the ARDM's step."""
  with xr.open_dataset(d / "out" / "analysis.nc") as a:
    times = np.asarray(a["time"].values, np.float64)
  if np.allclose(np.diff(times), step):
    return None
  listed = ", ".join(f"{t:g}" for t in times)
  return f"the analysis is labelled t = {listed} but the ARDM steps {step:g}"


def same_as(base: str):
  return lambda w, d, _: diff_runs(d / "out", w.base(base))


def judge_refusal(case: Case, run: Run) -> tuple[str, str]:
  if run.exc is not None:
    first = (str(run.exc).strip().splitlines() or [""])[0]
    return POOR, f"uncaught {type(run.exc).__name__}: {short(first)}"
  lines = error_lines(run.err)
  if run.code != 2:
    return POOR, f"exit {run.code}: {short(' | '.join(lines[-2:]))}"
  if len(lines) != 1:
    return POOR, f"{len(lines)} error lines: {short(' | '.join(lines))}"
  message = short(lines[0])
  if case.expect == "equal":
    return POOR, f"refuses a harmless input: {message}"
  if case.expect == "accept":
    return POOR, f"refused: {message}"
  if not names_one(strip_root(lines[0]), case.keywords):
    return POOR, f"names none of {list(case.keywords)}: {message}"
  if progress_before_error(run.err):
    return POOR, f"refused only after the work: {message}"
  return GOOD, message


def run_case(case: Case, world: World, d: Path) -> tuple[str, str]:
  if case.special is not None:
    return case.special(world, d)
  if case.call is not None:
    return run_api_case(case, world, d)
  argv = case.argv(world, d)
  out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
  fresh = case.fresh_out and out is not None and not out.exists()
  protected = {}
  if case.protect is not None:
    for p in case.protect(world, d):
      protected.update(file_hashes(Path(p)))
  run = run_cli(argv)
  gone = changed(protected)
  if gone and "--overwrite" not in map(str, argv):
    return BAD, (f"finished work or an input changed ({', '.join(gone[:3])});"
                 f" exit {run.code}: {short(' | '.join(error_lines(run.err)))}")
  if run.code == 0:
    if case.expect == "refuse":
      note = ""
      if case.compare is not None:
        try:
          note = case.compare(world, d, None) or ""
        except Exception as e:  # noqa: BLE001
          note = f"({type(e).__name__}: {e})"
      return BAD, "accepted (exit 0)" + (f": {note}" if note else
                                         ": a silent wrong result")
    if case.expect == "ignored":
      diff = None
      if case.compare is not None:
        try:
          diff = case.compare(world, d, None)
        except Exception as e:  # noqa: BLE001
          diff = f"the outputs cannot be compared ({type(e).__name__}: {e})"
      if diff:
        return BAD, f"accepted (exit 0), and {diff}"
      return POOR, "accepted (exit 0): the flag or input is silently ignored"
    if case.compare is None:
      return GOOD, "accepted"
    try:
      diff = case.compare(world, d, None)
    except Exception as e:  # noqa: BLE001
      diff = f"the outputs cannot be compared ({type(e).__name__}: {e})"
    if diff:
      return BAD, f"accepted (exit 0), but {diff}"
    return GOOD, "accepted; the result is the one the input means"
  left = [] if out is None else result_files(out) if out.is_dir() else (
      [out.name] if out.is_file() else [])
  if fresh and left:
    return BAD, (f"refused but left {left} in --out:"
                 f" {short(' | '.join(error_lines(run.err)))}")
  return judge_refusal(case, run)


USER_ERRORS = (ValueError, OSError)


def run_api_case(case: Case, world: World, d: Path) -> tuple[str, str]:
  try:
    result = case.call(world, d)
  except USER_ERRORS as e:
    text = str(e).strip()
    lines = text.splitlines()
    if case.expect == "equal":
      return POOR, f"refuses a harmless call: {short(text)}"
    if len(lines) != 1:
      return POOR, f"{type(e).__name__} of {len(lines)} lines: {short(text)}"
    if not names_one(strip_root(text), case.keywords):
      return POOR, (f"names none of {list(case.keywords)}:"
                    f" {type(e).__name__}: {short(text)}")
    return GOOD, f"{type(e).__name__}: {short(text)}"
  except KeyboardInterrupt:
    raise
  except BaseException as e:  # noqa: BLE001
    first = (str(e).strip().splitlines() or [""])[0]
    return POOR, f"uncaught {type(e).__name__}: {short(first)}"
  if case.expect == "refuse":
    return BAD, f"accepted: returned {type(result).__name__}"
  if case.expect == "ignored":
    return POOR, "accepted: the argument is silently ignored"
  if case.compare is not None:
    try:
      diff = case.compare(world, d, result)
    except Exception as e:  # noqa: BLE001
      diff = f"the result cannot be compared ({type(e).__name__}: {e})"
    if diff:
      return BAD, f"accepted, but {diff}"
  return GOOD, "accepted; the result is the one the input means"


# --- file writers -------------------------------------------------------------


def write_table(df: pd.DataFrame, path: Path, **kw) -> Path:
  df.to_csv(path, index=False, **kw)
  return path


def csv_mutant(name: str):
  """A KS station table changed by fn, as d/obs.csv."""
  def make(fn):
    def argv(w, d):
      return w.ks(obs=write_table(fn(w.ks_table.copy()), d / "obs.csv"),
                  out=d / "out")
    return argv
  return make


def text_file(d: Path, name: str, text: str | bytes) -> Path:
  path = d / name
  if isinstance(text, bytes):
    path.write_bytes(text)
  else:
    path.write_text(text)
  return path


def with_cell(df: pd.DataFrame, column: str, value, row: int = 4):
  df[column] = df[column].astype(object)
  df.loc[row, column] = value
  return df


def truncated(path: Path, d: Path, name: str, fraction: float = 0.5) -> Path:
  data = path.read_bytes()
  return text_file(d, name, data[:int(len(data) * fraction)])


def copy(src: Path, dst: Path) -> Path:
  if src.is_dir():
    shutil.copytree(src, dst)
  else:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
  return dst


def nc(ds: xr.Dataset, path: Path) -> Path:
  ds.to_netcdf(path)
  return path


def mutate_splits(src: Path, dst: Path, fn) -> Path:
  dst.mkdir(parents=True, exist_ok=True)
  for split in ("train", "validation", "test"):
    with xr.open_dataset(src / f"{split}.nc") as ds:
      fn(ds.load()).to_netcdf(dst / f"{split}.nc")
  return dst


# --- KS: the station table ---------------------------------------------------


READ_ONLY = " (read by the API, no run)"


def ks_csv_cases() -> list[Case]:
  L = 32 * np.pi
  cases = []

  def case(cid, what, fn, keywords=(), expect="refuse", level="cli"):
    if level == "obs":
      cases.append(Case(
          f"ks-csv-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.ks_points(
              write_table(fn(w.ks_table.copy()), d / "obs.csv")),
          compare=lambda w, d, r: diff_observations(r, w.ks_obs)))
      return
    cases.append(Case(f"ks-csv-{cid}", what, csv_mutant(cid)(fn), expect,
                      tuple(keywords),
                      same_as("ks_csv") if expect != "refuse" else None))

  for column in ("time", "x", "variable", "value", "error_std"):
    case(f"blank-{column}", f"a blank {column} cell",
         lambda t, c=column: with_cell(t, c, None), [column])
  for column in ("time", "x", "value", "error_std"):
    case(f"text-in-{column}", f"the text 'abc' in the numeric column {column}",
         lambda t, c=column: with_cell(t, c, "abc"), [column])
  case("x-with-unit", "an x cell '12.3m' (a unit)",
       lambda t: with_cell(t, "x", "12.3m"), ["x"])
  case("error-std-percent", "an error_std cell '10%'",
       lambda t: with_cell(t, "error_std", "10%"), ["error_std"])
  case("rows-shuffled", "the rows in another order",
       lambda t: t.sample(frac=1.0, random_state=0), expect="equal")
  case("columns-permuted", "the columns in another order",
       lambda t: t[list(t.columns)[::-1]], expect="equal", level="obs")
  case("extra-column", "an extra column (station id)",
       lambda t: t.assign(station=np.arange(len(t)) % 13), expect="equal",
       level="obs")
  case("variable-padded", "variable names with spaces (' u ')",
       lambda t: t.assign(variable=" u "), expect="equal", level="obs")
  case("time-integers", "times written as integers",
       lambda t: t.assign(time=t["time"].astype(int)), expect="equal",
       level="obs")
  case("rows-before-start", "extra rows at or before t_0 (left out by design)",
       lambda t: pd.concat([t.assign(time=t["time"] - 5.0).iloc[:26], t]),
       expect="equal", level="obs")
  case("x-plus-period", "positions shifted by one period (periodic x)",
       lambda t: t.assign(x=t["x"] + L), expect="equal")
  case("time-roundoff", "times with round-off (t + 1e-9)",
       lambda t: t.assign(time=t["time"] + 1e-9), expect="equal",
       level="obs")
  case("x-minus-period", "positions shifted by minus one period",
       lambda t: t.assign(x=t["x"] - L), expect="equal", level="obs")
  case("value-renamed", "column value renamed val",
       lambda t: t.rename(columns={"value": "val"}), ["value"])
  case("no-error-std", "no error_std column",
       lambda t: t.drop(columns="error_std"), ["error_std"])
  case("time-renamed", "column time spelt Time",
       lambda t: t.rename(columns={"time": "Time"}), ["time"])
  case("time-off-step", "times t + 0.5 (not model times)",
       lambda t: t.assign(time=t["time"] + 0.5), ["model time", "0.5", "1.5"])
  case("time-as-dates", "ISO dates where the model counts in numbers",
       lambda t: t.assign(time=[str(np.datetime64("2020-01-01") +
                                    np.timedelta64(int(v), "D"))
                                for v in t["time"]]),
       ["date", "number", "numeric"])
  case("time-before-start", "every time before t_0",
       lambda t: t.assign(time=t["time"] - 100.0),
       ["overlap", "no observation", "before"])
  case("row-repeated", "a row repeated",
       lambda t: pd.concat([t, t.iloc[[3]]]),
       ["repeat", "duplicate", "row"])
  case("value-inf", "an inf value", lambda t: with_cell(t, "value", np.inf),
       ["value", "inf", "finite"])
  case("error-std-zero", "an error_std of 0",
       lambda t: with_cell(t, "error_std", 0.0), ["error_std"])
  case("error-std-negative", "a negative error_std",
       lambda t: with_cell(t, "error_std", -0.1), ["error_std"])
  case("error-std-inf", "an inf error_std",
       lambda t: with_cell(t, "error_std", np.inf), ["error_std"])
  case("variable-unknown", "variable 'v', which KS does not predict",
       lambda t: t.assign(variable="v"), ["'v'"])
  case("variable-case", "variable 'U' for 'u'",
       lambda t: t.assign(variable="U"), ["'U'"])
  case("header-only", "a header without rows", lambda t: t.iloc[:0],
       ["no rows", "empty", "no observation"])
  case("level-column", "a level column (500) for the single-field KS u",
       lambda t: t.assign(level=500.0), ["level"])
  case("lat-lon-columns", "lat/lon columns instead of x",
       lambda t: t.rename(columns={"x": "lon"}).assign(lat=0.0),
       ["x", "lat", "lon"])

  def raw(cid, what, make, keywords=(), expect="refuse", level="cli"):
    if level == "obs":
      cases.append(Case(
          f"ks-csv-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.ks_points(make(w, d)),
          compare=lambda w, d, r: diff_observations(r, w.ks_obs)))
      return

    def argv(w, d):
      return w.ks(obs=make(w, d), out=d / "out")
    cases.append(Case(f"ks-csv-{cid}", what, argv, expect, tuple(keywords),
                      same_as("ks_csv") if expect != "refuse" else None))

  base = lambda w: w.p("ks_stations.csv").read_text()
  raw("empty-file", "an empty file (0 bytes)",
      lambda w, d: text_file(d, "obs.csv", ""),
      ["empty", "no rows", "no data", "missing column"])
  raw("txt-suffix", "the CSV saved as .txt",
      lambda w, d: text_file(d, "obs.txt", base(w)),
      ["kind", "suffix", "csv"])
  raw("semicolons", "a CSV with ; as separator",
      lambda w, d: text_file(d, "obs.csv", base(w).replace(",", ";")),
      ["column", "separator", "delimiter"])
  raw("truncated", "a CSV cut off in the middle of a row",
      lambda w, d: text_file(d, "obs.csv", base(w)[:len(base(w)) * 3 // 5]),
      ["blank", "row", "truncated"])
  raw("crlf", "Windows line endings",
      lambda w, d: text_file(d, "obs.csv", base(w).replace("\n", "\r\n")
                             .encode()), expect="equal", level="obs")
  raw("bom", "a UTF-8 byte order mark",
      lambda w, d: text_file(d, "obs.csv", "\ufeff".encode() +
                             base(w).encode()), ["time"], expect="either",
                             level="obs")
  raw("quoted", "every field quoted",
      lambda w, d: write_table(w.ks_table, d / "obs.csv",
                               quoting=csv.QUOTE_ALL), expect="equal",
                               level="obs")
  raw("index-column", "pandas' index written as an unnamed first column",
      lambda w, d: (w.ks_table.to_csv(d / "obs.csv"), d / "obs.csv")[1],
      expect="equal", level="obs")
  raw("trailing-blank-lines", "blank lines at the end",
      lambda w, d: text_file(d, "obs.csv", base(w) + "\n\n\n"),
      expect="equal", level="obs")
  raw("header-spaces", "spaces around the header names",
      lambda w, d: text_file(d, "obs.csv", base(w).replace(
          ",", " , ", 4)), ["time", "x"], expect="either", level="obs")
  raw("netcdf-table", "the same table as a NetCDF point table",
      lambda w, d: nc(w.ks_table.to_xarray(), d / "obs.nc"), expect="equal",
      level="obs")
  raw("netcdf-table-2d", "a NetCDF point table with two dims",
      lambda w, d: nc(w.ks_table.set_index(["time", "x"]).to_xarray(),
                      d / "obs.nc"), ["dim", "time", "x"])
  raw("directory", "a folder given as --observations",
      lambda w, d: (d / "obs").mkdir() or d / "obs",
      ["folder", "directory", "zarr"])
  raw("missing-file", "a file that does not exist",
      lambda w, d: d / "nowhere.csv", ["nowhere.csv", "does not exist"])
  return cases


# --- KS: gridded observations ------------------------------------------------


def ks_grid_cases() -> list[Case]:
  cases = []

  def case(cid, what, fn, keywords=(), expect="refuse", error_std=None,
           compare=None, suffix=".nc", level="cli", reference=None):
    def write(w, d):
      ds = fn(w.ks_gridded.copy(deep=True))
      path = d / f"obs{suffix}"
      if suffix == ".zarr":
        ds.to_zarr(path)
      else:
        ds.to_netcdf(path)
      return path

    def argv(w, d):
      kw = {} if error_std is None else {"error_std": error_std}
      return w.ks_grid(obs=write(w, d), out=d / "out", **kw)
    if level == "obs":
      std = 0.1 if error_std is None else None
      cases.append(Case(
          f"ks-grid-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.ks_grid_obs(
              write(w, d), std),
          compare=lambda w, d, r: diff_observations(r, w.ks_grid_obs(
              nc(reference(w.ks_gridded.copy(deep=True)), d / "ref.nc")
              if reference else None))))
      return
    if compare is None and expect != "refuse":
      compare = same_as("ks_grid")
    cases.append(Case(f"ks-grid-{cid}", what, argv, expect, tuple(keywords),
                      compare))

  dx = 32 * np.pi / 128
  case("x-reversed", "x running the other way",
       lambda g: g.isel(x=slice(None, None, -1)), expect="equal")
  case("x-shifted", "x shifted by half a grid step (another grid)",
       lambda g: g.assign_coords(x=g["x"] + dx / 2), ["x"])
  case("x-scaled", "x scaled by 2 (another grid)",
       lambda g: g.assign_coords(x=g["x"] * 2), ["x"])
  case("x-subset", "every other grid point only",
       lambda g: g.isel(x=slice(0, None, 2)), ["x"])
  case("x-float32", "the x coordinate stored as float32",
       lambda g: g.assign_coords(x=g["x"].astype(np.float32)),
       expect="equal", level="obs")
  case("x-no-coordinate", "an x dim without a coordinate",
       lambda g: g.drop_vars("x"), ["x"])
  case("time-no-coordinate", "the fields of t = 1..4 without a time"
       " coordinate", lambda g: g.isel(time=slice(1, None)).drop_vars("time"),
       ["time"], compare=lambda w, d, _: "the fields were placed at t = 0..3"
       " by array position")
  case("x-repeated-value", "one x coordinate value repeated",
       lambda g: g.assign_coords(x=np.r_[g["x"].values[:5],
                                         g["x"].values[4:-1]]), ["x"])
  case("time-reversed", "times in decreasing order",
       lambda g: g.isel(time=slice(None, None, -1)),
       ["increasing", "sorted", "order"], expect="either", level="obs")
  case("time-repeated", "a time repeated (two different fields)",
       lambda g: xr.concat([g.isel(time=[0, 1, 2]),
                            g.isel(time=[2]) + 1.0, g.isel(time=[3, 4])],
                           "time"), ["repeat", "duplicate"])

  def unobserved_t2(g):
    g["u"].loc[{"time": 2.0}] = np.nan
    return g
  case("time-dropped", "one time left out (unobserved then)",
       lambda g: g.drop_sel(time=2.0), ["time"], expect="either",
       level="obs", reference=unobserved_t2)
  case("time-off-step", "times t + 0.5 (not model times)",
       lambda g: g.assign_coords(time=g["time"] + 0.5),
       ["model time", "0.5"])
  case("time-as-dates", "dates where the model counts in numbers",
       lambda g: g.assign_coords(time=pd.date_range("2020-01-01",
                                                    periods=g.sizes["time"])),
       ["date", "number", "numeric"])
  case("variable-renamed", "u renamed w", lambda g: g.rename(u="w"),
       ["'u'", "u"])
  case("extra-variable", "an extra variable w",
       lambda g: g.assign(w=g["u"] * 2), expect="equal", level="obs")
  case("transposed", "dims in the order (x, time)",
       lambda g: g.transpose("x", "time"), ["dim"], expect="either",
       level="obs")
  case("float64", "values as float64", lambda g: g.astype(np.float64),
       expect="equal", level="obs")
  case("strings", "values stored as text",
       lambda g: g.assign(u=g["u"].astype(str)), ["u", "numeric", "number"],
       expect="either")
  case("inf", "an inf value (NaN means unobserved, inf does not)",
       lambda g: g.assign(u=g["u"].where(~np.isfinite(g["u"]) | (
           g["x"] != g["x"][5]) | (g["time"] != 1.0), np.inf)),
       ["inf", "finite"])
  case("extra-dim", "an extra dim (member)",
       lambda g: g.expand_dims(member=2), ["member", "dim"])
  case("zarr", "the same file as a zarr store", lambda g: g, expect="equal",
       suffix=".zarr", level="obs")
  case("error-std-var-negative", "u_error_std < 0, no --error-std",
       lambda g: g.assign(u_error_std=xr.full_like(g["u"], -0.1)),
       ["error_std", "error std"], error_std=())
  case("error-std-var-nan", "u_error_std NaN at an observed point",
       lambda g: g.assign(u_error_std=xr.full_like(g["u"], 0.1).where(
           g["u"].isnull() | (g["time"] != 1.0))), ["error_std", "error std"],
       error_std=())
  case("error-std-var-equal", "u_error_std = 0.1 everywhere, no --error-std",
       lambda g: g.assign(u_error_std=xr.full_like(g["u"], 0.1).fillna(0.1)),
       error_std=(), expect="equal", level="obs")
  case("error-std-var-nan-unobserved", "u_error_std = 0.1, NaN where"
       " unobserved, no --error-std",
       lambda g: g.assign(u_error_std=xr.full_like(g["u"], 0.1).where(
           g["u"].notnull())), error_std=(), expect="equal", level="obs")
  case("no-error-std", "no --error-std and no u_error_std", lambda g: g,
       ["error std", "error_std", "--error-std"], error_std=())
  for cid, value, kws in (("negative", "-1", ["error", "std"]),
                          ("zero", "0", ["error", "std"]),
                          ("nan", "nan", ["error", "std"]),
                          ("text", "abc", ["error-std", "error std"]),
                          ("unknown-variable", "v=0.1", ["'u'", "'v'", "u"])):
    case(f"error-std-flag-{cid}", f"--error-std {value}", lambda g: g, kws,
         error_std=("--error-std", value))

  def raw(cid, what, make, keywords):
    cases.append(Case(f"ks-grid-{cid}", what,
                      lambda w, d: w.ks_grid(obs=make(w, d), out=d / "out"),
                      "refuse", tuple(keywords)))
  raw("truncated", "a NetCDF file cut in half",
      lambda w, d: truncated(w.p("ks_gridded.nc"), d, "obs.nc"),
      ["obs.nc", "netcdf", "read"])
  raw("empty-file", "an empty .nc file",
      lambda w, d: text_file(d, "obs.nc", b""), ["obs.nc", "netcdf", "empty"])
  raw("text-as-nc", "a text file named .nc",
      lambda w, d: text_file(d, "obs.nc", "time,x,u\n1,2,3\n"),
      ["obs.nc", "netcdf", "read"])
  return cases


# --- KS: initial state, truth, flags ---------------------------------------


def ks_initial_cases() -> list[Case]:
  cases = []
  dx = 32 * np.pi / 128

  def case(cid, what, fn, keywords=(), expect="refuse", extra=(),
           level="cli"):
    if level == "state":
      cases.append(Case(
          f"ks-init-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.ks_state(nc(
              fn(w.ks_initial.copy(deep=True)), d / "initial.nc")),
          compare=lambda w, d, r: diff_states(r, w.ks_state())))
      return

    def argv(w, d):
      return w.ks(initial=nc(fn(w.ks_initial.copy(deep=True)),
                             d / "initial.nc"), out=d / "out", extra=extra)
    cases.append(Case(f"ks-init-{cid}", what, argv, expect, tuple(keywords),
                      same_as("ks_csv") if expect != "refuse" else None))

  case("x-reversed", "x running the other way",
       lambda s: s.isel(x=slice(None, None, -1)), expect="equal")
  case("x-scaled", "x scaled by 2 (another domain than the model's)",
       lambda s: s.assign_coords(x=s["x"] * 2), ["x", "grid"])
  case("x-shifted", "x shifted by half a grid step",
       lambda s: s.assign_coords(x=s["x"] + dx / 2), ["x", "grid"])
  case("x-subset", "64 of the 128 points", lambda s: s.isel(x=slice(0, 64)),
       ["x", "grid", "shape", "64"])
  case("x-float32", "the x coordinate stored as float32",
       lambda s: s.assign_coords(x=s["x"].astype(np.float32)),
       expect="equal", level="state")
  case("dim-renamed", "dim x spelt s", lambda s: s.rename(x="s"),
       ["'x'", "'s'", "x"])
  case("variable-renamed", "u renamed v", lambda s: s.rename(u="v"),
       ["'u'"])
  case("extra-variable", "an extra variable w",
       lambda s: s.assign(w=s["u"] * 3), expect="equal", level="state")
  case("float64", "the state as float64", lambda s: s.astype(np.float64),
       expect="equal", level="state")
  case("nan", "a NaN in the state",
       lambda s: s.assign(u=s["u"].where(s["x"] != s["x"][7])),
       ["nan", "finite"])
  case("inf", "an inf in the state",
       lambda s: s.assign(u=s["u"].where(s["x"] != s["x"][7], np.inf)),
       ["inf", "finite"])
  case("members-3-vs-2", "an ensemble of 3 with --members 2",
       lambda s: s.expand_dims(sample=3), ["members", "sample"])
  case("member-dim", "an ensemble on a dim `member` (not `sample`)",
       lambda s: s.expand_dims(member=2), ["member"])
  case("two-equal-members", "an ensemble of 2 equal members (= one state)",
       lambda s: s.expand_dims(sample=2), expect="equal", level="state")
  case("time-as-date", "a date where the model counts in numbers",
       lambda s: s.assign_coords(time=[np.datetime64("2020-01-01", "ns")]),
       ["date", "number", "numeric"])
  case("no-time", "no time at all (t_0 = 0)",
       lambda s: s.isel(time=0, drop=True), expect="equal", level="state")
  case("time-half", "t_0 = 0.5 (the observations are then off the step)",
       lambda s: s.assign_coords(time=[0.5]), ["model time", "0.5"])
  case("history-of-two", "two times [-1, 0] (the model uses the last)",
       lambda s: xr.concat([s.assign_coords(time=[-1.0]) * 0.5, s], "time"),
       expect="equal", level="state")

  def raw(cid, what, make, keywords):
    cases.append(Case(f"ks-init-{cid}", what,
                      lambda w, d: w.ks(initial=make(w, d), out=d / "out"),
                      "refuse", tuple(keywords)))
  raw("txt", "the initial state as a .txt file",
      lambda w, d: text_file(d, "initial.txt", "u\n1\n2\n"),
      ["initial.txt", "netcdf", "read"])
  raw("empty-file", "an empty initial file",
      lambda w, d: text_file(d, "initial.nc", b""),
      ["initial.nc", "netcdf", "empty"])
  raw("truncated", "the initial NetCDF cut in half",
      lambda w, d: truncated(w.p("ks_initial.nc"), d, "initial.nc"),
      ["initial.nc", "netcdf", "read"])
  raw("missing", "an initial file that does not exist",
      lambda w, d: d / "nowhere.nc", ["nowhere.nc", "does not exist"])
  raw("csv", "a CSV given as the initial state",
      lambda w, d: copy(w.p("ks_stations.csv"), d / "initial.csv"),
      ["initial.csv", "netcdf", "read"])
  return cases


def ks_truth_cases() -> list[Case]:
  cases = []

  def case(cid, what, fn, keywords=(), expect="refuse"):
    def argv(w, d):
      return w.ks(truth=nc(fn(w.ks_truth.copy(deep=True)), d / "truth.nc"),
                  out=d / "out")
    cases.append(Case(f"ks-truth-{cid}", what, argv, expect, tuple(keywords),
                      same_as("ks_csv") if expect != "refuse" else None))
  case("too-short", "a truth that ends before the run",
       lambda t: t.isel(time=slice(0, 3)), ["truth"])
  case("x-reversed", "a truth with x running the other way",
       lambda t: t.isel(x=slice(None, None, -1)), expect="equal")
  case("x-scaled", "a truth on another grid",
       lambda t: t.assign_coords(x=t["x"] * 2), ["x", "grid"])
  case("variable-renamed", "a truth of v instead of u",
       lambda t: t.rename(u="v"), ["'u'"])
  case("ensemble", "an ensemble (sample dim) as the truth",
       lambda t: t.expand_dims(sample=2), ["sample", "truth"])
  case("time-off-step", "truth times t + 0.5",
       lambda t: t.assign_coords(time=t["time"] + 0.5), ["truth", "time"])
  cases.append(Case("ks-truth-txt", "a .txt file as the truth",
                    lambda w, d: w.ks(truth=text_file(d, "truth.txt", "x"),
                                      out=d / "out"), "refuse",
                    ("truth.txt", "netcdf", "read")))
  return cases


def ks_flag_cases() -> list[Case]:
  cases = []

  def case(cid, what, extra, keywords=(), expect="refuse", base=None,
           compare=None):
    def argv(w, d):
      return (base or (lambda w, d: w.ks(out=d / "out")))(w, d) + list(
          extra(w, d) if callable(extra) else extra)
    cases.append(Case(f"ks-flag-{cid}", what, argv, expect, tuple(keywords),
                      compare))

  case("members-0", "--members 0", ["--members", "0"], ["members"],
       "ignored")
  case("members-negative", "--members -2", ["--members", "-2"], ["members"])
  case("members-text", "--members abc", ["--members", "abc"], ["members"])
  case("steps-0", "--steps 0", ["--steps", "0"], ["steps"])
  case("steps-negative", "--steps -1", ["--steps", "-1"], ["steps"])
  case("steps-beyond-truth", "--steps 20 with a truth of 4 steps",
       ["--steps", "20"], ["truth", "steps"])
  case("seed-negative", "--seed -1", ["--seed", "-1"], ["seed"])
  case("operator-unknown", "--operator cubic", ["--operator", "cubic"],
       ["operator"])
  case("error-std-with-points", "--error-std 5 with a point table (ignored?)",
       ["--error-std", "5"], ["error-std", "error std", "point"], "ignored",
       compare=same_as("ks_csv"))
  case("data-and-initial", "--data and --initial together (which one?)",
       lambda w, d: ["--data", w.p("D")], ["--data", "--initial"], "ignored")
  case("restart-and-initial", "--restart and --initial together",
       lambda w, d: ["--restart", w.base("ks_csv")],
       ["--restart", "--initial"], "ignored")
  case("config-unknown", "--config nope", ["--config", "nope"],
       ["nope", "config"])
  case("ardm-missing", "--ardm a checkpoint that does not exist",
       lambda w, d: ["--ardm", d / "none.npz"], ["none.npz", "does not exist"])
  case("controller-other-system", "--controller kolmogorov with the KS ARDM",
       ["--controller", "kolmogorov"], ["kolmogorov", "ARDM", "trained"])
  case("controller-is-ardm", "an ARDM checkpoint given as --controller",
       lambda w, d: ["--controller", w.p("A.npz")],
       ["A.npz", "controller", "ARDM"])
  case("ardm-is-controller", "a controller checkpoint given as --ardm",
       lambda w, d: ["--ardm", w.p("C.npz")], ["C.npz", "controller", "ARDM"])
  case("config-kolmogorov", "--config kolmogorov with the KS checkpoints",
       ["--config", "kolmogorov"], ["kolmogorov", "ks", "system"])
  case("model-dt-2", "--set pde.model_dt=2.0 (the ARDM steps 1.0),"
       " observations at t = 2, 4",
       ["--set", "pde.model_dt=2.0"], ["model_dt", "trained", "time step"],
       base=lambda w, d: w.ks(obs=write_table(
           w.ks_table[w.ks_table["time"] % 2 == 0], d / "obs.csv"),
           truth=None, out=d / "out"),
       expect="ignored", compare=lambda w, d, _: labelled_step(d, 1.0))
  case("restart-without-file", "--restart a folder without restart.nc",
       lambda w, d: ["--restart", w.p("D")], ["restart.nc"],
       base=lambda w, d: ["assimilate", "--ardm", "ks", "--controller", "ks",
                          "--observations", w.p("ks_stations.csv"),
                          "--out", d / "out"])
  case("restart-of-other-model", "--restart the run of another model (toy)",
       lambda w, d: ["--restart", w.base("toy_csv")],
       ["'u'", "x", "grid", "variable"],
       base=lambda w, d: ["assimilate", "--ardm", "ks", "--controller", "ks",
                          "--observations", w.p("ks_stations.csv"),
                          "--out", d / "out"])
  case("restart-members", "--restart of a 2-member run with --members 3",
       ["--members", "3"], ["members"],
       base=lambda w, d: ["assimilate", "--ardm", "ks", "--controller", "ks",
                          "--observations", w.p("ks_stations.csv"),
                          "--restart", w.base("ks_csv"), "--out", d / "out"])
  return cases


# --- existing outputs ---------------------------------------------------------


def tiny_cases() -> list[Case]:
  """The CLI-trained tiny ARDM (32 points, 22 units) with the inputs of
  another grid: its checkpoint's grid decides."""
  def argv(w, d, scale):
    test = xr.open_dataset(w.p("D") / "test.nc").isel(trajectory=0,
                                                      drop=True).load()
    initial = test.isel(time=[0]).assign_coords(x=test["x"] * scale)
    rows = [{"time": float(k), "x": float(x), "variable": "u", "value": 0.5,
             "error_std": 0.1} for k in (1, 2) for x in initial["x"][::4]]
    return (["assimilate", "--ardm", w.p("A.npz"), "--controller",
             w.p("C.npz"), "--members", "2", "--observations",
             write_table(pd.DataFrame(rows), d / "obs.csv"), "--initial",
             nc(initial, d / "initial.nc"), "--out", d / "out"] + TINY)
  return [Case("tiny-init-x-scaled", "the tiny ARDM with an initial state"
               " and stations on x scaled by 2 (another domain)",
               lambda w, d: argv(w, d, 2.0), "refuse", ("x", "grid"))]


def output_cases() -> list[Case]:
  cases = []

  def previous_run(w, d):
    copy(w.base("ks_csv"), d / "out")
    return w.ks(out=d / "out", extra=["--seed", "1"])

  cases.append(Case(
      "out-previous-run", "assimilate --out a folder holding a previous run",
      previous_run, "refuse", ("exist", "--overwrite"),
      protect=lambda w, d: [d / "out"], fresh_out=False))

  def overwrite_changes(w, d, _):
    with xr.open_dataset(d / "out" / "analysis.nc") as a, xr.open_dataset(
        w.base("ks_csv") / "analysis.nc") as b:
      if np.allclose(a["u"].values, b["u"].values):
        return "the previous analysis was kept"
    return None
  cases.append(Case(
      "out-overwrite", "assimilate --overwrite into a previous run",
      lambda w, d: previous_run(w, d) + ["--overwrite"], "accept", (),
      overwrite_changes, fresh_out=False))

  def restart_into_itself(w, d):
    copy(w.base("ks_csv"), d / "run")
    return ["assimilate", "--ardm", "ks", "--controller", "ks",
            "--observations", w.p("ks_stations.csv"), "--restart", d / "run",
            "--out", d / "run"]
  cases.append(Case(
      "out-is-restart", "--restart DIR --out DIR (cycling into itself)",
      restart_into_itself, "refuse", ("--restart", "input", "exist"),
      protect=lambda w, d: [d / "run"], fresh_out=False))

  def initial_inside_out(w, d):
    copy(w.p("ks_initial.nc"), d / "run" / "analysis.nc")
    return w.ks(initial=d / "run" / "analysis.nc", out=d / "run")
  cases.append(Case(
      "out-holds-initial", "--initial RUN/analysis.nc --out RUN",
      initial_inside_out, "refuse", ("--initial", "input"),
      protect=lambda w, d: [d / "run"], fresh_out=False))

  def out_is_file(w, d):
    copy(w.p("ks_stations.csv"), d / "notes.csv")
    return w.ks(out=d / "notes.csv")
  cases.append(Case(
      "out-is-a-file", "--out an existing file", out_is_file, "refuse",
      ("is a file", "file"), protect=lambda w, d: [d / "notes.csv"],
      fresh_out=False))

  def unrelated(w, d):
    (d / "out").mkdir(parents=True)
    text_file(d / "out", "notes.txt", "my notes\n")
    return w.ks(out=d / "out")
  cases.append(Case(
      "out-unrelated-files", "--out a folder holding only someone's notes.txt",
      unrelated, "either", ("exist", "not empty", "notes.txt"),
      same_as("ks_csv"), protect=lambda w, d: [d / "out" / "notes.txt"],
      fresh_out=False))

  def train_existing(w, d):
    copy(w.p("A.npz"), d / "a.npz")
    return w.train_ardm(out=d / "a.npz",
                        extra=["--set", "ardm_training.num_steps=4"])
  cases.append(Case(
      "train-ardm-existing-out", "train-ardm --out a finished checkpoint"
      " (4 steps instead of 2)", train_existing, "refuse",
      ("exist", "--overwrite"), protect=lambda w, d: [d / "a.npz"],
      fresh_out=False))

  def out_replaces_split(w, d):
    copy(w.p("D"), d / "data")
    return w.train_ardm(data=d / "data", out=d / "data" / "train.nc")
  cases.append(Case(
      "train-ardm-out-is-split", "train-ardm --out DATA/train.nc",
      out_replaces_split, "refuse", ("input", "--data", "inside", "exist"),
      protect=lambda w, d: [d / "data"], fresh_out=False))

  def out_inside_data(w, d):
    copy(w.p("D"), d / "data")
    return w.train_ardm(data=d / "data", out=d / "data" / "ardm.npz")
  cases.append(Case(
      "train-ardm-out-in-data", "train-ardm --out DATA/ardm.npz (inside"
      " --data)", out_inside_data, "ignored", ("--data", "inside", "input"),
      protect=lambda w, d: [d / "data"], fresh_out=False))

  def workdir_is_data(w, d):
    copy(w.p("D"), d / "data")
    return w.train_ardm(data=d / "data", out=d / "a.npz",
                        extra=["--workdir", d / "data", "--fresh"])
  cases.append(Case(
      "train-ardm-workdir-is-data", "train-ardm --workdir DATA --fresh",
      workdir_is_data, "ignored", ("--workdir", "--data", "input"),
      protect=lambda w, d: [d / "data"]))

  def controller_existing(w, d):
    copy(w.p("C.npz"), d / "c.npz")
    return ["train-controller", "--data", w.p("D"), "--ardm", w.p("A.npz"),
            "--out", d / "c.npz"] + TINY + [
                "--set", "controller_training.num_steps=3"]
  cases.append(Case(
      "train-controller-existing-out", "train-controller --out a finished"
      " checkpoint (3 steps instead of 2)", controller_existing, "refuse",
      ("exist", "--overwrite"), protect=lambda w, d: [d / "c.npz"],
      fresh_out=False))

  def simulate_existing(w, d):
    copy(w.p("D"), d / "data")
    return ["simulate", "--out", d / "data"] + TINY + [
        "--set", "data.seed=1"]
  cases.append(Case(
      "simulate-existing-out", "simulate --out an existing data folder",
      simulate_existing, "refuse", ("exist", "--overwrite"),
      protect=lambda w, d: [d / "data"], fresh_out=False))
  return cases


# --- training data ----------------------------------------------------------


def training_cases() -> list[Case]:
  cases = []

  def case(cid, what, fn, keywords=(), expect="refuse", command="ardm",
           compare=None):
    def argv(w, d):
      data = mutate_splits(w.p("D"), d / "data", fn)
      if command == "ardm":
        return w.train_ardm(data=data, out=d / "a.npz")
      return ["train-controller", "--data", data, "--ardm", w.p("A.npz"),
              "--out", d / "c.npz"] + TINY
    if compare is None and expect != "refuse":
      compare = lambda w, d, _: diff_checkpoints(d / "a.npz", w.p("A.npz"))
    cases.append(Case(f"train-{command}-{cid}", what, argv, expect,
                      tuple(keywords), compare))

  def drop(ds, i):
    return ds.isel(time=[k for k in range(ds.sizes["time"]) if k != i])

  case("gap", "training data with one time left out (a gap)",
       lambda ds: drop(ds, 5), ["gap", "step", "apart", "regular"])
  case("repeated-time", "training data with a time repeated",
       lambda ds: ds.isel(time=[0, 1, 2, 3, 3] + list(range(4, ds.sizes[
           "time"]))), ["repeat", "duplicate", "increasing"])
  case("unsorted", "training data with two times swapped",
       lambda ds: ds.isel(time=[0, 1, 3, 2] + list(range(4, ds.sizes[
           "time"]))), ["increasing", "order", "sorted"])
  case("step-2", "training data 2 time units apart (model_dt 1)",
       lambda ds: ds.assign_coords(time=ds["time"] * 2),
       ["model_dt", "apart", "step"])
  case("dates", "training data with daily dates as times (pde.model_dt 1.0)",
       lambda ds: ds.assign_coords(time=pd.date_range(
           "2020-01-01", periods=ds.sizes["time"], freq="D")),
       ["date", "model_dt", "number", "numeric"], expect="either",
       compare=lambda w, d, _: recorded_step(d / "a.npz", np.timedelta64(
           1, "D")))
  case("variable-renamed", "training data of w instead of u",
       lambda ds: ds.rename(u="w"), ["'u'"])
  case("x-reversed", "training data with x running the other way",
       lambda ds: ds.isel(x=slice(None, None, -1)), ["x"], expect="either")
  case("extra-variable", "training data with an extra variable",
       lambda ds: ds.assign(w=ds["u"] * 2), expect="equal")
  case("float64", "training data as float64",
       lambda ds: ds.astype(np.float64), expect="equal")
  case("transposed", "training data with dims (trajectory, x, time)",
       lambda ds: ds.transpose("trajectory", "x", "time"), ["dim", "order"],
       expect="either")
  case("gap", "controller training data with a gap",
       lambda ds: drop(ds, 5), ["gap", "step", "apart", "regular"],
       command="controller")
  case("x-scaled", "controller training data on another grid than the"
       " ARDM's (x scaled by 2)", lambda ds: ds.assign_coords(x=ds["x"] * 2),
       ["x", "grid"], command="controller")
  case("variable-renamed", "controller training data of w instead of u",
       lambda ds: ds.rename(u="w"), ["'u'"], command="controller")
  cases.append(Case(
      "train-controller-other-system", "train-controller --ardm the shipped"
      " Kolmogorov ARDM on KS data", lambda w, d: [
          "train-controller", "--data", w.p("D"), "--ardm",
          REPO / "gencast_control" / "checkpoints" / "kolmogorov_ardm.npz",
          "--out", d / "c.npz"] + TINY,
      "refuse", ("kolmogorov", "system", "shape", "grid")))
  return cases


# --- the custom system: variables by name ----------------------------------


def custom_cases() -> list[Case]:
  cases = []

  def initial_case(cid, what, fn, keywords=(), expect="refuse"):
    def argv(w, d):
      return w.cust(initial=nc(fn(w.cust_initial.copy(deep=True)),
                               d / "initial.nc"), out=d / "out")
    cases.append(Case(f"custom-init-{cid}", what, argv, expect,
                      tuple(keywords),
                      same_as("cust_csv") if expect != "refuse" else None))
  initial_case("order-v-h", "an initial state with its variables stored (v, h)",
               lambda s: s[["v", "h"]], expect="equal")
  initial_case("missing-v", "an initial state without v", lambda s: s[["h"]],
               ["'v'"])
  initial_case("dim-renamed", "an initial state on dim x instead of s",
               lambda s: s.rename(s="x"), ["'s'", "s"])
  initial_case("s-reversed", "an initial state with s running the other way",
               lambda s: s.isel(s=slice(None, None, -1)), expect="equal")
  def cust_grid(w, d, order):
    from gencast_control import api
    truth = xr.open_dataset(w.p("cust_data") / "test.nc").isel(
        trajectory=0, drop=True).load().isel(time=slice(0, 5))
    ds = truth.where(truth["s"] % 3 == 0)[list(order)]
    return api.observations_from_dataset(
        api.open_dataset(nc(ds, d / f"grid_{''.join(order)}.nc")),
        w.cust_model, w.cust_initial, error_std={"h": 0.1, "v": 0.3},
        dt=1.0)
  cases.append(Case(
      "custom-grid-order-v-h", "gridded observations with the variables"
      " stored (v, h)" + READ_ONLY, call=lambda w, d: cust_grid(
          w, d, ("v", "h")), expect="equal",
      compare=lambda w, d, r: diff_observations(r, cust_grid(w, d,
                                                             ("h", "v")))))
  cases.append(Case(
      "custom-config-variables-v-h", "assimilate --set pde.variables=(v, h)"
      " for an ARDM trained on (h, v)",
      lambda w, d: w.cust(out=d / "out", extra=[
          "--set", "pde.variables=('v', 'h')"]), "either",
      ("variables", "order", "'h'"), same_as("cust_csv")))
  cases.append(Case(
      "custom-model-dt-2", "assimilate --set pde.model_dt=2.0 for an ARDM"
      " trained at 1.0 (observations at t = 2, 4)",
      lambda w, d: w.cust(obs=write_table(
          w.cust_table[w.cust_table["time"] % 2 == 0], d / "obs.csv"),
          out=d / "out", extra=["--set", "pde.model_dt=2.0"]), "ignored",
      ("model_dt", "trained", "time step"),
      lambda w, d, _: labelled_step(d, 1.0)))
  cases.append(Case(
      "custom-csv-x-for-s", "a station table with a column x for the dim s",
      lambda w, d: w.cust(obs=write_table(w.cust_table.rename(
          columns={"s": "x"}), d / "obs.csv"), out=d / "out"), "refuse",
      ("'s'", "s")))
  return cases


# --- the toy weather model: dates, levels, the sphere -------------------------


def toy_cases() -> list[Case]:
  cases = []

  def csv_case(cid, what, fn, keywords=(), expect="refuse", level="cli"):
    if level == "obs":
      cases.append(Case(
          f"toy-csv-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.toy_points(
              write_table(fn(w.toy_table.copy()), d / "obs.csv")),
          compare=lambda w, d, r: diff_observations(r, w.toy_points())))
      return

    def argv(w, d):
      return w.toy(obs=write_table(fn(w.toy_table.copy()), d / "obs.csv"),
                   out=d / "out")
    cases.append(Case(f"toy-csv-{cid}", what, argv, expect, tuple(keywords),
                      same_as("toy_csv") if expect != "refuse" else None))

  def shift_times(t, fmt):
    stamps = pd.to_datetime(t["time"], utc=True)
    return t.assign(time=[fmt(s) for s in stamps])

  csv_case("offset-plus-1h", "times written with a +01:00 offset (same"
           " instants)", lambda t: shift_times(t, lambda s: (
               s.tz_convert("Europe/Paris").isoformat())), expect="equal",
               level="obs")
  csv_case("no-zone", "times without a zone (read as UTC)",
           lambda t: t.assign(time=t["time"].str.rstrip("Z")),
           expect="equal", level="obs")
  csv_case("space-separated", "times as '2024-01-01 06:00:00'",
           lambda t: shift_times(t, lambda s: s.strftime("%Y-%m-%d %H:%M:%S")),
           expect="equal", level="obs")
  csv_case("hours-as-numbers", "times as numbers (hours) for a dated model",
           lambda t: t.assign(time=[6.0 * (i // 6 + 1) for i in range(len(t))]),
           ["date", "number", "numeric"])
  csv_case("off-step", "times at 05:00 (not a 6 h step)",
           lambda t: t.assign(time=t["time"].str.replace("T06", "T05")),
           ["model time", "05:00"])
  csv_case("seconds-off", "times 30 s after the step",
           lambda t: t.assign(time=t["time"].str.replace(":00Z", ":00:30Z")),
           ["model time", ":30"])
  csv_case("us-dates", "US dates (01/01/2024 06:00)",
           lambda t: shift_times(t, lambda s: s.strftime("%m/%d/%Y %H:%M")),
           ["ISO", "01/01/2024"])
  csv_case("invalid-date", "an impossible date (2024-02-30)",
           lambda t: with_cell(t, "time", "2024-02-30T06:00Z"),
           ["2024-02-30", "time"])
  csv_case("years-off", "dates in 1990 (no overlap)",
           lambda t: t.assign(time=t["time"].str.replace("2024", "1990")),
           ["overlap", "no observation", "before"])
  csv_case("blank-level", "a blank level for temperature",
           lambda t: t.assign(level=np.nan), ["level"])
  csv_case("level-700", "level 700 (the model has 500, 850)",
           lambda t: t.assign(level=t["level"].replace(850.0, 700.0)),
           ["700", "level"])
  csv_case("level-pa", "levels in Pa (85000)",
           lambda t: t.assign(level=t["level"] * 100), ["85000", "level"])
  csv_case("level-on-surface", "a level for surface_pressure",
           lambda t: t.assign(level=850.0), ["surface_pressure", "level"])
  csv_case("lat-95", "a station at latitude 95",
           lambda t: with_cell(t, "lat", 95.0), ["lat", "95", "outside"])
  csv_case("blank-lat", "a blank lat cell", lambda t: with_cell(t, "lat", None),
           ["lat"])
  csv_case("lon-negative", "longitude 355 written as -5",
           lambda t: t.assign(lon=t["lon"].where(t["lon"] < 180,
                                                 t["lon"] - 360)),
           expect="equal")
  csv_case("lon-plus-360", "longitudes + 360",
           lambda t: t.assign(lon=t["lon"] + 360), expect="equal", level="obs")
  csv_case("latitude-longitude", "columns named latitude/longitude",
           lambda t: t.rename(columns={"lat": "latitude", "lon": "longitude"}),
           expect="equal", level="obs")
  csv_case("lat-and-latitude", "both lat and latitude columns",
           lambda t: t.assign(latitude=t["lat"]), ["latitude", "lat"])
  csv_case("lat-lon-swapped", "columns lat and lon swapped (lat 100)",
           lambda t: t.rename(columns={"lat": "lon", "lon": "lat"}),
           ["lat", "outside", "100"])
  csv_case("variable-unknown", "variable humidity",
           lambda t: with_cell(t, "variable", "humidity"), ["humidity"])
  csv_case("rows-shuffled", "rows in another order",
           lambda t: t.sample(frac=1.0, random_state=1), expect="equal")

  def timestamps(w, d):
    import gencast_control as gc
    stamps = pd.to_datetime(w.toy_table["time"], utc=True)
    return gc.observations_from_points(
        w.toy_table.assign(time=stamps.dt.tz_convert("Europe/Paris")),
        w.toy_model, w.toy_initial)
  cases.append(Case(
      "toy-points-timestamps", "a DataFrame with tz-aware pandas Timestamps"
      " (Europe/Paris)" + READ_ONLY, expect="equal", call=timestamps,
      compare=lambda w, d, r: diff_observations(r, w.toy_points())))

  def init_case(cid, what, fn, keywords=(), expect="refuse", level="cli"):
    if level == "state":
      cases.append(Case(
          f"toy-init-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.toy_state(nc(
              fn(w.toy_initial.copy(deep=True)), d / "initial.nc")),
          compare=lambda w, d, r: diff_states(r, w.toy_state())))
      return

    def argv(w, d):
      return w.toy(initial=nc(fn(w.toy_initial.copy(deep=True)),
                              d / "initial.nc"), out=d / "out")
    cases.append(Case(f"toy-init-{cid}", what, argv, expect, tuple(keywords),
                      same_as("toy_csv") if expect != "refuse" else None))

  init_case("lat-descending", "latitude descending (WeatherBench2's order)",
            lambda s: s.isel(lat=slice(None, None, -1)), expect="equal")
  init_case("lon-reversed", "longitude descending",
            lambda s: s.isel(lon=slice(None, None, -1)), expect="equal",
            level="state")
  init_case("levels-reversed", "levels (850, 500)",
            lambda s: s.isel(level=[1, 0]), expect="equal", level="state")
  init_case("variables-reordered", "variables stored in the other order",
            lambda s: s[["temperature", "surface_pressure"]], expect="equal")
  init_case("dims-transposed", "dims (time, lon, lat)",
            lambda s: s.transpose("time", "lon", "level", "lat"),
            expect="equal", level="state")
  init_case("lat-scaled", "latitudes halved (another grid)",
            lambda s: s.assign_coords(lat=s["lat"] / 2), ["lat"])
  init_case("lon-shifted", "longitudes shifted by 15 (another grid)",
            lambda s: s.assign_coords(lon=s["lon"] + 15), ["lon"])
  init_case("lon-180", "longitudes -180..150 (the same points)",
            lambda s: s.assign_coords(lon=((s["lon"] + 180) % 360) - 180)
            .sortby("lon"), ["lon"], expect="either", level="state")
  init_case("missing-level", "temperature without level 500",
            lambda s: s.sel(level=[850.0]), ["500", "level"])
  init_case("no-level-dim", "temperature without a level dim",
            lambda s: s.assign(temperature=s["temperature"].isel(level=0,
                                                                 drop=True)),
            ["level"])
  init_case("missing-variable", "no surface_pressure",
            lambda s: s[["temperature"]], ["surface_pressure"])
  init_case("time-number", "time 0.0 (a number) for a dated model",
            lambda s: s.assign_coords(time=[0.0]), ["date", "number",
                                                    "numeric"])
  init_case("time-03h", "t_0 at 03:00 (observations off the step)",
            lambda s: s.assign_coords(time=[TOY_START + np.timedelta64(3,
                                                                       "h")]),
            ["model time", "03:00"])
  init_case("history-of-two", "two times (-6 h, 0 h); the model uses the last",
            lambda s: xr.concat([s.assign_coords(time=[TOY_START - SIX_HOURS])
                                 * 0.5, s], "time"), expect="equal",
                                 level="state")
  init_case("batch-1", "a batch dim of size 1",
            lambda s: s.expand_dims(batch=1), expect="equal", level="state")
  init_case("batch-2", "a batch of 2", lambda s: s.expand_dims(batch=2),
            ["batch"])

  def grid_case(cid, what, fn, keywords=(), expect="refuse",
                error_std=("--error-std", "0.2"), level="cli"):
    if level == "obs":
      std = {k or "*": float(v) for k, _, v in (
          item.rpartition("=") for item in error_std[1::2])}
      std = std.get("*", std)
      cases.append(Case(
          f"toy-grid-{cid}", what + READ_ONLY, expect=expect,
          keywords=tuple(keywords), call=lambda w, d: w.toy_grid_obs(
              nc(fn(w.toy_gridded.copy(deep=True)), d / "obs.nc"), std),
          compare=lambda w, d, r: diff_observations(r, w.toy_grid_obs())))
      return

    def argv(w, d):
      return w.toy_grid(obs=nc(fn(w.toy_gridded.copy(deep=True)),
                               d / "obs.nc"), out=d / "out",
                        error_std=error_std)
    cases.append(Case(f"toy-grid-{cid}", what, argv, expect, tuple(keywords),
                      same_as("toy_grid") if expect != "refuse" else None))
  grid_case("lat-descending", "latitude descending",
            lambda g: g.isel(lat=slice(None, None, -1)), expect="equal")
  grid_case("levels-reversed", "levels (850, 500)",
            lambda g: g.isel(level=[1, 0]), expect="equal", level="obs")
  grid_case("transposed", "dims (time, lon, lat)",
            lambda g: g.transpose("time", "level", "lon", "lat"),
            expect="equal", level="obs")
  grid_case("lat-shifted", "latitudes shifted by 5 (another grid)",
            lambda g: g.assign_coords(lat=g["lat"] + 5), ["lat"])
  grid_case("time-repeated", "a time repeated",
            lambda g: g.isel(time=[0, 1, 1, 2, 3, 4]), ["repeat", "duplicate"])
  grid_case("time-off-step", "times 1 h off the step",
            lambda g: g.assign_coords(time=g["time"] + np.timedelta64(1, "h")),
            ["model time", "01:00"])
  grid_case("time-numbers", "times as numbers",
            lambda g: g.assign_coords(time=np.arange(g.sizes["time"]) * 6.0),
            ["date", "number", "numeric"])
  grid_case("error-std-one-variable", "--error-std for temperature only",
            lambda g: g, ["surface_pressure"],
            error_std=("--error-std", "temperature=0.2"))
  grid_case("error-std-per-variable", "--error-std for each variable",
            lambda g: g, expect="equal",
            error_std=("--error-std", "temperature=0.2", "--error-std",
                       "surface_pressure=0.2"), level="obs")
  return cases


# --- the Python API ---------------------------------------------------------


def api_cases() -> list[Case]:
  import gencast_control as gc
  cases = []

  def case(cid, what, call, keywords=(), expect="refuse", compare=None):
    cases.append(Case(f"api-{cid}", what, call=call, expect=expect,
                      keywords=tuple(keywords), compare=compare))

  obs_pts = lambda w, **kw: gc.observations_from_points(
      w.ks_table, w.ks_model, w.ks_initial, **{"dt": 1.0, **kw})
  run = lambda w, **kw: gc.assimilate(
      w.ks_model, w.ks_controller, w.ks_obs, w.ks_initial,
      **{"members": 2, **kw})

  case("load-model-int", "gc.load_model(3)", lambda w, d: gc.load_model(3),
       ["load_model", "int"])
  case("load-model-none", "gc.load_model(None)",
       lambda w, d: gc.load_model(None), ["load_model", "None"])
  case("load-model-unknown", "gc.load_model('nope')",
       lambda w, d: gc.load_model("nope"), ["nope"])
  case("load-model-missing", "gc.load_model('missing.npz')",
       lambda w, d: gc.load_model(str(d / "missing.npz")),
       ["missing.npz", "does not exist"])
  case("load-model-bad-factory", "gc.load_model('tests.toy_ardm:nothing')",
       lambda w, d: gc.load_model("tests.toy_ardm:nothing"), ["nothing"])
  case("load-model-bad-module", "gc.load_model('no_such_module:f')",
       lambda w, d: gc.load_model("no_such_module:f"), ["no_such_module"])
  case("load-model-controller", "gc.load_model(a controller checkpoint)",
       lambda w, d: gc.load_model(str(w.p("C.npz"))),
       ["controller", "C.npz", "ARDM"])
  case("load-model-csv", "gc.load_model(a CSV file)",
       lambda w, d: gc.load_model(str(w.p("ks_stations.csv"))),
       ["ks_stations.csv", "checkpoint"])
  case("load-controller-model-str", "gc.load_controller('ks', 'ks')",
       lambda w, d: gc.load_controller("ks", "ks"), ["model"])
  case("load-controller-swapped", "gc.load_controller(model, 'ks')",
       lambda w, d: gc.load_controller(w.ks_model, "ks"),
       ["model", "controller"])
  case("load-controller-other-system", "gc.load_controller('kolmogorov', ks)",
       lambda w, d: gc.load_controller("kolmogorov", w.ks_model),
       ["kolmogorov", "ARDM", "trained"])
  case("points-swapped", "observations_from_points(model, table, initial)",
       lambda w, d: gc.observations_from_points(w.ks_model, w.ks_table,
                                                w.ks_initial), ["model"])
  case("points-table-int", "observations_from_points(3, ...)",
       lambda w, d: gc.observations_from_points(3, w.ks_model, w.ks_initial,
                                                dt=1.0), ["table"])
  case("points-table-array", "observations_from_points(an array, ...)",
       lambda w, d: gc.observations_from_points(
           w.ks_table.to_numpy(), w.ks_model, w.ks_initial, dt=1.0),
       ["table", "DataFrame"])
  case("points-table-missing", "observations_from_points('missing.csv')",
       lambda w, d: gc.observations_from_points(
           str(d / "missing.csv"), w.ks_model, w.ks_initial, dt=1.0),
       ["missing.csv", "does not exist"])
  case("points-initial-none", "observations_from_points(..., initial=None)",
       lambda w, d: gc.observations_from_points(w.ks_table, w.ks_model, None,
                                                dt=1.0), ["initial"])
  case("points-initial-array", "observations_from_points(..., an array)",
       lambda w, d: gc.observations_from_points(
           w.ks_table, w.ks_model, w.ks_initial["u"].values, dt=1.0),
       ["initial"])
  case("points-initial-dataarray", "observations_from_points(..., a DataArray)",
       lambda w, d: gc.observations_from_points(
           w.ks_table, w.ks_model, w.ks_initial["u"], dt=1.0),
       ["initial", "Dataset"])
  for cid, value in (("zero", 0), ("negative", -1.0), ("text", "abc"),
                     ("nan", float("nan"))):
    case(f"points-dt-{cid}", f"observations_from_points(dt={value!r})",
         lambda w, d, v=value: obs_pts(w, dt=v), ["dt"])
  case("points-dt-2", "observations_from_points(dt=2.0) for an ARDM of step 1",
       lambda w, d: gc.observations_from_points(
           w.ks_table[w.ks_table["time"] % 2 == 0], w.ks_model, w.ks_initial,
           dt=2.0), ["dt", "step", "model_dt", "trained"])
  case("points-dt-none", "observations_from_points without dt (KS)",
       lambda w, d: gc.observations_from_points(w.ks_table, w.ks_model,
                                                w.ks_initial), ["dt"],
       expect="either",
       compare=lambda w, d, r: diff_observations(r, w.ks_obs))
  case("points-variables-unknown", "variables=['v']",
       lambda w, d: obs_pts(w, variables=["v"]), ["'v'"])
  case("points-variables-string", "variables='temperature' (a string) for"
       " the toy", lambda w, d: gc.observations_from_points(
           w.toy_table, w.toy_model, w.toy_initial, variables="temperature"),
       ["variables"])
  case("points-method", "method='cubic'", lambda w, d: obs_pts(
      w, method="cubic"), ["method"])
  case("points-method-int", "method=3", lambda w, d: obs_pts(w, method=3),
       ["method"])
  for cid, value in (("negative", -1), ("float", 2.5), ("text", "3")):
    case(f"points-num-steps-{cid}", f"num_steps={value!r}",
         lambda w, d, v=value: obs_pts(w, num_steps=v), ["num_steps"])
  case("points-start-text", "start='yesterday'",
       lambda w, d: obs_pts(w, start="yesterday"), ["start", "yesterday"])
  case("points-blank-x", "a DataFrame with a NaN position",
       lambda w, d: gc.observations_from_points(
           with_cell(w.ks_table.copy(), "x", np.nan), w.ks_model,
           w.ks_initial, dt=1.0), ["x"])
  case("dataset-error-std-negative", "observations_from_dataset(error_std=-1)",
       lambda w, d: gc.observations_from_dataset(
           w.ks_gridded, w.ks_model, w.ks_initial, error_std=-1.0, dt=1.0),
       ["error std", "error_std"])
  case("dataset-error-std-text", "observations_from_dataset(error_std='abc')",
       lambda w, d: gc.observations_from_dataset(
           w.ks_gridded, w.ks_model, w.ks_initial, error_std="abc", dt=1.0),
       ["error std", "error_std"])
  case("dataset-error-std-other-variable", "error_std={'v': 0.1}",
       lambda w, d: gc.observations_from_dataset(
           w.ks_gridded, w.ks_model, w.ks_initial, error_std={"v": 0.1},
           dt=1.0), ["'u'", "u"])
  case("dataset-is-table", "observations_from_dataset(a DataFrame)",
       lambda w, d: gc.observations_from_dataset(
           w.ks_table, w.ks_model, w.ks_initial, error_std=0.1, dt=1.0),
       ["Dataset"])
  case("dataset-x-reversed", "observations_from_dataset(x reversed)",
       lambda w, d: gc.observations_from_dataset(
           w.ks_gridded.isel(x=slice(None, None, -1)), w.ks_model,
           w.ks_initial, error_std=0.1, dt=1.0), expect="equal",
       compare=lambda w, d, r: diff_observations(r, w.ks_grid_obs()))
  for cid, kw, kws in (("members-0", {"members": 0}, ["members"]),
                       ("members-float", {"members": 2.5}, ["members"]),
                       ("members-text", {"members": "2"}, ["members"]),
                       ("members-bool", {"members": True}, ["members"]),
                       ("seed-negative", {"seed": -1}, ["seed"]),
                       ("seed-float", {"seed": 1.5}, ["seed"]),
                       ("progress-int", {"progress": 3}, ["progress"]),
                       ("first-step-negative", {"first_step": -1},
                        ["first_step"])):
    case(f"assimilate-{cid}", f"gc.assimilate(..., {kw})",
         lambda w, d, kw=kw: run(w, **kw), kws)
  case("assimilate-obs-controller-swapped",
       "gc.assimilate(model, obs, controller, initial)",
       lambda w, d: gc.assimilate(w.ks_model, w.ks_obs, w.ks_controller,
                                  w.ks_initial, members=2), ["controller"])
  case("assimilate-initial-obs-swapped",
       "gc.assimilate(model, controller, initial, obs)",
       lambda w, d: gc.assimilate(w.ks_model, w.ks_controller, w.ks_initial,
                                  w.ks_obs, members=2),
       ["observations", "ObservationSet"])
  case("assimilate-model-controller-swapped",
       "gc.assimilate(controller, model, obs, initial)",
       lambda w, d: gc.assimilate(w.ks_controller, w.ks_model, w.ks_obs,
                                  w.ks_initial, members=2), ["model"])
  case("assimilate-other-grid", "gc.assimilate with an initial state on"
       " another grid than the observations'",
       lambda w, d: gc.assimilate(
           w.ks_model, w.ks_controller, w.ks_obs,
           w.ks_initial.assign_coords(x=w.ks_initial["x"] * 2), members=2),
       ["x", "grid"])
  case("assimilate-obs-of-other-model", "gc.assimilate(ks model, ...,"
       " observations made for the toy model)",
       lambda w, d: gc.assimilate(w.ks_model, w.ks_controller, w.toy_points(),
                                  w.ks_initial, members=2),
       ["grid", "shape", "model"])
  case("assimilate-other-variable", "gc.assimilate with an initial state of"
       " v instead of u", lambda w, d: gc.assimilate(
           w.ks_model, w.ks_controller, w.ks_obs,
           w.ks_initial.rename(u="v"), members=2), ["'u'"])
  case("assimilate-initial-path", "gc.assimilate(..., initial as a path)",
       lambda w, d: gc.assimilate(w.ks_model, w.ks_controller, w.ks_obs,
                                  str(w.p("ks_initial.nc")), members=2),
       expect="equal",
       compare=lambda w, d, r: diff_datasets(r, w.ks_analysis, "analysis"))
  case("assimilate-initial-x-reversed",
       "gc.assimilate(..., initial with x reversed)",
       lambda w, d: gc.assimilate(
           w.ks_model, w.ks_controller, w.ks_obs,
           w.ks_initial.isel(x=slice(None, None, -1)), members=2),
       expect="equal",
       compare=lambda w, d, r: diff_datasets(r, w.ks_analysis, "analysis"))
  case("custom-variables-v-h", "observations_from_points(variables=('v', 'h'))"
       " for an ARDM trained on (h, v)",
       lambda w, d: w.cust_analysis(("v", "h")), ["variables", "order", "'h'"],
       expect="either", compare=lambda w, d, r: diff_datasets(
           r, w.cust_analysis(("h", "v")), "analysis"))
  case("score-swapped", "gc.score(truth, analysis)",
       lambda w, d: gc.score(w.ks_truth, w.ks_analysis), ["sample"])
  case("score-truth-short", "gc.score with a truth that ends early",
       lambda w, d: gc.score(w.ks_analysis, w.ks_truth.isel(time=[0, 1])),
       ["truth", "time"])
  case("score-truth-other-grid", "gc.score with a truth on another grid",
       lambda w, d: gc.score(w.ks_analysis, w.ks_truth.assign_coords(
           x=w.ks_truth["x"] * 2)), ["x"])
  case("score-truth-int", "gc.score(analysis, 3)",
       lambda w, d: gc.score(w.ks_analysis, 3), ["truth"])
  case("score-truth-x-reversed", "gc.score with a truth whose x runs the"
       " other way", lambda w, d: gc.score(
           w.ks_analysis, w.ks_truth.isel(x=slice(None, None, -1))),
       expect="equal", compare=lambda w, d, r: diff_numbers(
           r, gc.score(w.ks_analysis, w.ks_truth), "score"))
  case("monitoring-swapped", "gc.monitoring(background, obs, analysis)",
       lambda w, d: gc.monitoring(w.ks_analysis, w.ks_obs, w.ks_analysis),
       ["observations", "ObservationSet"])
  case("monitoring-missing-file", "gc.monitoring(obs, 'missing.nc', ...)",
       lambda w, d: gc.monitoring(w.ks_obs, str(d / "missing.nc"),
                                  w.ks_analysis),
       ["missing.nc", "does not exist"])

  def write_twice(w, d):
    gc.write_analysis(w.ks_analysis, d / "a.nc")
    return gc.write_analysis(w.ks_analysis, d / "a.nc")
  case("write-existing", "gc.write_analysis to an existing file", write_twice,
       ["exist"])
  case("write-txt", "gc.write_analysis(..., 'a.txt')",
       lambda w, d: gc.write_analysis(w.ks_analysis, d / "a.txt"),
       [".txt", "kind"])
  case("write-path-int", "gc.write_analysis(analysis, 3)",
       lambda w, d: gc.write_analysis(w.ks_analysis, 3), ["path"])
  case("write-swapped", "gc.write_analysis(path, analysis)",
       lambda w, d: gc.write_analysis(str(d / "a.nc"), w.ks_analysis),
       ["analysis", "Dataset"])
  case("write-naming", "gc.write_analysis(naming='wb')",
       lambda w, d: gc.write_analysis(w.ks_analysis, d / "a.nc",
                                      naming="wb"), ["naming"])
  case("restart-history-0", "gc.restart_state(analysis, 0)",
       lambda w, d: gc.restart_state(w.ks_analysis, 0), ["history_length"])
  case("restart-history-long", "gc.restart_state(analysis, 100)",
       lambda w, d: gc.restart_state(w.ks_analysis, 100),
       ["history", "time"])
  case("restart-of-initial", "gc.restart_state(initial)",
       lambda w, d: gc.restart_state(w.ks_initial), ["attribute", "analysis"])
  case("restart-of-obs", "gc.restart_state(obs)",
       lambda w, d: gc.restart_state(w.ks_obs), ["analysis", "Dataset"])
  return cases


# --- processes and signals ---------------------------------------------


def spawn(argv: list, log_path: Path) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, "-m", "gencast_control.cli"] + [str(a) for a in argv],
      cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
      stderr=open(log_path, "w"))


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0
             ) -> bool:
  """True once predicate() holds while proc runs."""
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < timeout:
    if predicate():
      return proc.poll() is None
    if proc.poll() is not None:
      return False
    time.sleep(0.05)
  return False


def stop(proc: subprocess.Popen) -> None:
  if proc.poll() is None:
    proc.send_signal(signal.SIGINT)
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def logged_steps_once(workdir: Path) -> str | None:
  log = workdir / "log.jsonl"
  if not log.exists():
    return None
  steps = [json.loads(l).get("step") for l in log.read_text().splitlines()
           if l.strip()]
  steps = [s for s in steps if s is not None]
  repeated = sorted({s for s in steps if steps.count(s) > 1})
  return f"log.jsonl repeats steps {repeated[:5]}" if repeated else None


def signal_training(sig: signal.Signals):
  def special(w: World, d: Path) -> tuple[str, str]:
    out = d / "a.npz"
    argv = w.train_ardm(out=out, extra=LONG)
    reference = w.training_reference()
    proc = spawn(argv, d / "stderr.txt")
    state = d / "a.work" / "state.npz"
    if not wait_for(state.exists, proc):
      stop(proc)
      return POOR, ("inconclusive: the run ended before its first state"
                    f" (exit {proc.returncode}): "
                    f"{short((d / 'stderr.txt').read_text()[-300:])}")
    time.sleep(0.3)
    proc.send_signal(sig)
    try:
      code = proc.wait(60)
    except subprocess.TimeoutExpired:
      proc.kill()
      code = proc.wait()
      return POOR, f"{sig.name} did not stop the run within 60 s"
    err = (d / "stderr.txt").read_text()
    if code == 0:
      return POOR, f"inconclusive: the run finished before the {sig.name}"
    if out.exists():
      return BAD, (f"the interrupted run wrote its --out checkpoint (exit"
                   f" {code}): an unfinished model labelled finished")
    log = d / "a.work" / "log.jsonl"
    logged = log.read_text() if log.exists() else ""
    note = ""
    if sig == signal.SIGINT:
      said = [l for l in err.splitlines() if "interrupted" in l]
      if code != 130 or "Traceback" in err or len(said) != 1:
        note = f"exit {code} on SIGINT" + (" with a traceback" if
                                           "Traceback" in err else "") + (
            "" if said else ", no one-line 'interrupted' message")
    rerun = run_cli(argv)
    if rerun.code != 0:
      return POOR, (f"the rerun does not resume: exit {rerun.code}:"
                    f" {short(' | '.join(error_lines(rerun.err)))}")
    diff = diff_checkpoints(out, reference)
    if diff:
      return BAD, f"the resumed run differs from an uninterrupted one: {diff}"
    repeated = logged_steps_once(d / "a.work")
    if repeated:
      return POOR, repeated
    if not logged or not log.read_text().startswith(logged):
      return POOR, ("the rerun did not continue the interrupted run's log"
                    " (started afresh?)")
    leftovers = [p.name for p in (d / "a.work").glob("*.tmp")]
    if leftovers:
      return POOR, f"temporary files left: {leftovers}"
    if note:
      return POOR, note + "; the rerun resumed to the same parameters"
    return GOOD, (f"exit {code}; no checkpoint written; the rerun resumed to"
                  " the uninterrupted result bit for bit")
  return special


def long_observations(w: World, d: Path, steps: int = 30) -> Path:
  x = w.ks_table["x"].unique()
  rows = [{"time": float(k), "x": float(s), "variable": "u",
           "value": float(np.sin(s / 5 + k / 7)), "error_std": 0.3}
          for k in range(1, steps + 1) for s in x]
  return write_table(pd.DataFrame(rows), d / "long.csv")


def sigint_assimilate(w: World, d: Path) -> tuple[str, str]:
  argv = w.ks(obs=long_observations(w, d), truth=None, out=d / "out")
  proc = spawn(argv, d / "stderr.txt")
  started = lambda: "analysis:" in (d / "stderr.txt").read_text()
  if not wait_for(started, proc):
    stop(proc)
    return POOR, f"inconclusive: the run ended early (exit {proc.returncode})"
  time.sleep(1.0)
  proc.send_signal(signal.SIGINT)
  try:
    code = proc.wait(60)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    return POOR, "SIGINT did not stop the run within 60 s"
  err = (d / "stderr.txt").read_text()
  if code == 0:
    return POOR, "inconclusive: the run finished before the SIGINT"
  left = result_files(d / "out")
  if left:
    return BAD, f"the interrupted run left {left} in --out"
  rerun = run_cli(argv)
  if rerun.code != 0:
    return POOR, (f"the rerun into the same --out fails: exit {rerun.code}:"
                  f" {short(' | '.join(error_lines(rerun.err)))}")
  if code != 130 or "Traceback" in err:
    return POOR, f"exit {code} on SIGINT" + (" with a traceback" if
                                             "Traceback" in err else "")
  return GOOD, "exit 130, nothing written; the rerun into the same --out runs"


def concurrent_training(w: World, d: Path) -> tuple[str, str]:
  workdir = d / "work"
  first = spawn(w.train_ardm(out=d / "a1.npz",
                             extra=LONG + ["--workdir", workdir]),
                d / "stderr1.txt")
  try:
    if not wait_for((workdir / "state.npz").exists, first):
      return POOR, ("inconclusive: the first run ended before its first"
                    f" state (exit {first.returncode})")
    second = run_cli(w.train_ardm(out=d / "a2.npz",
                                  extra=LONG + ["--workdir", workdir]))
  finally:
    stop(first)
  if second.code == 0:
    return BAD, ("a second train-ardm ran in the work folder of a running one"
                 " (no lock): their states mix")
  case = Case("", "", keywords=("in use", "lock", "pid", "another run",
                                "another process"))
  return judge_refusal(case, second)


def concurrent_assimilate(w: World, d: Path) -> tuple[str, str]:
  out = d / "out"
  first = spawn(w.ks(obs=long_observations(w, d), truth=None, out=out),
                d / "stderr1.txt")
  try:
    started = lambda: "analysis:" in (d / "stderr1.txt").read_text()
    if not wait_for(started, first):
      return POOR, ("inconclusive: the first run ended early (exit"
                    f" {first.returncode})")
    second = run_cli(w.ks(out=out, extra=["--seed", "1"]))
    first_running = first.poll() is None
  finally:
    stop(first)
  if second.code == 0:
    return BAD, ("a second assimilate wrote into the --out of a running one"
                 + ("" if first_running else " (the first had finished)"))
  case = Case("", "", keywords=("in use", "lock", "pid", "another run",
                                "another process", "exist"))
  return judge_refusal(case, second)


def process_cases() -> list[Case]:
  return [
      Case("signal-sigint-train-ardm", "SIGINT during train-ardm, then the"
           " same command again", special=signal_training(signal.SIGINT)),
      Case("signal-sigterm-train-ardm", "SIGTERM during train-ardm, then the"
           " same command again", special=signal_training(signal.SIGTERM)),
      Case("signal-sigkill-train-ardm", "SIGKILL during train-ardm, then the"
           " same command again", special=signal_training(signal.SIGKILL)),
      Case("signal-sigint-assimilate", "SIGINT during assimilate, then the"
           " same command again", special=sigint_assimilate),
      Case("concurrent-train-ardm-workdir", "a second train-ardm into the"
           " --workdir of a running one", special=concurrent_training),
      Case("concurrent-assimilate-out", "a second assimilate into the --out"
           " of a running one", special=concurrent_assimilate),
  ]


def all_cases() -> list[Case]:
  cases = (ks_csv_cases() + ks_grid_cases() + ks_initial_cases()
           + ks_truth_cases() + ks_flag_cases() + tiny_cases()
           + custom_cases()
           + toy_cases() + output_cases() + training_cases()
           + process_cases() + api_cases())
  ids = [c.id for c in cases]
  duplicated = sorted({i for i in ids if ids.count(i) > 1})
  assert not duplicated, duplicated
  return cases


# ------------------------------------------------------------------ report


def markdown(rows: list[tuple[Case, str, str, float]], totals: str,
             seconds: float, argv=None) -> str:
  """The table under the provenance header (command, date, machine,
  versions, commit: gencast_control.evaluation.provenance)."""
  from gencast_control.evaluation import provenance
  lines = ["# Bad-input probe (`benchmarks/bad_input_probe.py`)", "",
           f"{totals} ({len(rows)} cases, {seconds:.0f} s)", "",
           "| # | case | input | class | message |", "|---|---|---|---|---|"]
  for i, (case, cls, message, _) in enumerate(rows, 1):
    cell = lambda s: str(s).replace("|", "\\|")
    lines.append(f"| {i} | {case.id} | {cell(case.what)} | {cls} |"
                 f" {cell(message)} |")
  command = [str(Path(__file__).resolve())] + list(
      sys.argv[1:] if argv is None else argv)
  return provenance.with_header("\n".join(lines), command)


def write_atomic(path: Path, text: str) -> None:
  """Temporary file, then rename (readable like any other file, not 0600)."""
  from gencast_control.core.checkpoint import atomic_write
  atomic_write(path, lambda f: f.write(text.encode()))


def main(argv=None) -> int:
  from gencast_control.evaluation import provenance
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=Path, help="write the table as markdown")
  provenance.add_publish_argument(parser, "bad_input_probe")
  provenance.add_overwrite_argument(parser, "an existing --out (or"
                                    " published) file")
  parser.add_argument("--only", help="run the cases whose id matches this"
                      " regex")
  parser.add_argument("--list", action="store_true", help="list the cases")
  parser.add_argument("--root", type=Path, help="work folder (default: a"
                      " temporary one, deleted at the end); its world is"
                      " reused when already built")
  args = parser.parse_args(argv)
  if args.out is not None and args.out.exists() and not args.overwrite:
    parser.error(f"--out {args.out} exists; give --overwrite to replace it")
  published = None
  if args.publish:
    published = provenance.publish_path("bad_input_probe")
    try:
      provenance.check_publish([published], args.overwrite)
    except ValueError as e:
      parser.error(str(e))
  cases = all_cases()
  if args.only:
    cases = [c for c in cases if re.search(args.only, c.id)]
  if args.list:
    for c in cases:
      print(f"{c.id:<45} {c.expect:<7} {c.what}")
    print(f"{len(cases)} cases")
    return 0
  t0 = time.perf_counter()
  log = lambda s: print(s, file=sys.stderr, flush=True)
  root = args.root or Path(tempfile.mkdtemp(prefix="probe_"))
  root.mkdir(parents=True, exist_ok=True)
  root = root.resolve()
  ROOT[:] = [str(root)]
  try:
    world = World(root)
    world.build(log)
    if (root / "cases").exists():
      shutil.rmtree(root / "cases")
    if (root / "refs").exists():
      shutil.rmtree(root / "refs")
    guard = file_hashes(world.w)
    rows = []
    print(f"{'case':<45} {'class':<5} message")
    for number, case in enumerate(cases, 1):
      d = root / "cases" / f"c{number:03d}"
      d.mkdir(parents=True)
      start = time.perf_counter()
      try:
        cls, message = run_case(case, world, d)
      except KeyboardInterrupt:
        raise
      except BaseException as e:  # noqa: BLE001 - a broken case, not a crash
        cls, message = POOR, (f"probe error ({type(e).__name__}:"
                              f" {short(str(e))}); see the traceback above")
        traceback.print_exc()
      touched = changed(guard)
      if touched:
        cls, message = BAD, (f"changed the world's files"
                             f" ({', '.join(touched[:3])}); {message}")
        guard = file_hashes(world.w)
      seconds = time.perf_counter() - start
      rows.append((case, cls, message, seconds))
      print(f"{case.id:<45} {cls:<5} {message}  [{seconds:.1f} s]",
            flush=True)
    counts = {k: sum(r[1] == k for r in rows) for k in (GOOD, POOR, BAD)}
    totals = (f"GOOD {counts[GOOD]} / POOR {counts[POOR]} / BAD"
              f" {counts[BAD]}")
    elapsed = time.perf_counter() - t0
    print(f"\n{totals}  ({len(rows)} cases, {elapsed:.0f} s)")
    text = markdown(rows, totals, elapsed, argv)
    for path in (args.out, published):
      if path is not None:
        write_atomic(path, text)
        print(f"wrote {path}")
  finally:
    if args.root is None:
      shutil.rmtree(root, ignore_errors=True)
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/bad_input_probe.py", main))
