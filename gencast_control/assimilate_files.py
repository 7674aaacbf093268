"""`gencast-control assimilate`: your observations, from files, to files.

Reads observations (a gridded NetCDF/zarr with NaN = unobserved, or a point
table as CSV/NetCDF), an initial state or ensemble (or a previous run's
restart.nc, or climatological training states), runs the controlled
assimilation and the unguided forecast from the same members and keys, and
writes:

    analysis.nc      the analysis ensemble (sample, time, *spatial)
    background.nc    the unguided forecast from the same initial ensemble
    restart.nc       the initial ensemble of the next cycle (--restart DIR)
    monitoring.json  O-B / O-A mean and RMSE per variable, expected values
    monitoring.md
    analysis.png     observations against the analysis
    scores.json      with --truth: RMSE, fair CRPS, spread/skill per method
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from gencast_control import api
from gencast_control.core import times as time_lib

from gencast_control.evaluation import plots
from gencast_control.core.checkpoint import atomic_write, write_json
from gencast_control.core.controller import bind_controller
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import ExperimentConfig, state_variables

# The files `run` writes into its output folder (see the module docstring);
# the CLI refuses a folder holding any of them unless --overwrite.
OUTPUT_FILES = ("analysis.nc", "background.nc", "restart.nc",
                "monitoring.json", "monitoring.md", "analysis.png")


def is_point_table(path) -> bool:
  """A table (.csv, or NetCDF with a `variable` column); anything that is
  not NetCDF or zarr goes to the table reader, which names what it takes."""
  path = Path(path)
  if path.suffix not in (".nc", ".nc4", ".zarr") and not path.is_dir():
    return True
  return "variable" in api.open_dataset(path).variables


def climatology(config: ExperimentConfig, data_dir, members: int,
                history_length: int, seed: int = 0, timestep=1.0
                ) -> tuple[xr.Dataset, str]:
  """Random training states as an initial ensemble, and which ones; their
  history times are (-h+1..0) * timestep (model times: the run starts at
  0)."""
  if isinstance(timestep, np.timedelta64):
    raise ValueError("climatological members have no date: give --initial"
                     " FILE (with the run's start date) or --restart DIR")
  path = pipeline.find_split(data_dir, "train")
  ds = api.open_dataset(path)
  rng = np.random.default_rng(seed)
  traj = rng.integers(0, ds.sizes["trajectory"], members)
  t0 = rng.integers(0, ds.sizes["time"] - history_length + 1, members)
  states = xr.concat(
      [ds.isel(trajectory=int(i), time=slice(int(t), int(t) + history_length))
       .drop_vars("time").assign_coords(
           time=(np.arange(history_length) - history_length + 1.0)
           * float(timestep))
       for i, t in zip(traj, t0)], dim="sample")
  which = ", ".join(f"(trajectory {i}, time index {t})"
                    for i, t in zip(traj, t0))
  return states.drop_vars("trajectory", errors="ignore"), (
      f"members start from training states of {path}: {which}")


def run(config: ExperimentConfig, ardm_path, controller_path, observations,
        out_dir, initial=None, restart=None, data_dir=None, truth=None,
        members: int | None = None, steps: int | None = None, error_std=None,
        method: str = "linear", seed: int = 0, stats=None, example=None,
        progress: bool = True, requested_dt: float | None = None) -> dict:
  """The `assimilate` command; returns the monitoring statistics (and
  scores). See the module docstring for the files written.

  A grid model comes from `ardm_path` (its checkpoint records its
  variables, grid and time step; older checkpoints take them from the
  config's pde.model_dt and the data); GenCast from `ardm_path` (DeepMind's
  checkpoint or a name), `stats` and `example` (api.load_model), and starts
  from the example's input frames unless --initial/--restart is given.
  requested_dt: a time step the user set explicitly (--set pde.model_dt),
  refused when the model's recorded step differs.
  """
  gencast = stats is not None or example is not None
  if gencast:
    if example is not None and not isinstance(example, xr.Dataset):
      from gencast_control.adapters.gencast.assets import load_example
      example_ds = load_example(example)  # read once: the model and x_0
    else:
      example_ds = example
    model = api.load_model(ardm_path, stats=stats, example=example_ds)
    controller = api.load_controller(controller_path, model)
  else:
    model, controller_config, params, _, _ = pipeline.load_checkpoints(
        config, api.checkpoint_path(ardm_path, "ardm"),
        api.checkpoint_path(controller_path, "controller"),
        check_time_step=False)  # the checkpoint's step (model.layout)
    controller = bind_controller(controller_config, model.periodic, params)
  dt = variables = None
  if model.layout is None:
    dt = float(getattr(config.pde, "model_dt", 1.0))
  elif requested_dt is not None and not time_lib.same_step(
      requested_dt, model.layout.timestep):
    raise ValueError(f"--set pde.model_dt={requested_dt:g} but the model was"
                     f" trained with step {model.layout.timestep}: drop the"
                     " override (the run steps by the model's step)")
  note = ""
  given = [flag for flag, value in (("--initial", initial),
                                    ("--restart", restart),
                                    ("--data", data_dir)) if value is not None]
  if len(given) > 1:
    raise ValueError(f"give one of --initial, --restart and --data, got"
                     f" {' and '.join(given)}")
  if members is not None and (isinstance(members, bool) or members < 1):
    raise ValueError(f"--members must be >= 1, got {members}")
  if restart is not None:
    initial_ds = api.open_dataset(Path(restart) / "restart.nc")
    api.check_written_by(initial_ds, model, f"{restart}/restart.nc")
    seed = int(initial_ds.attrs.get("seed", seed))
  elif initial is not None:
    initial_ds = api.open_dataset(initial)
  elif gencast:
    initial_ds = example_ds.isel(time=slice(0, model.history_length))
    note = f"members start from the input frames of the example {example}"
  elif data_dir is not None:
    initial_ds, note = climatology(
        config, data_dir, members if members is not None else 8,
        model.history_length, seed,
        model.layout.timestep if model.layout is not None else dt)
  else:
    raise ValueError("give --initial FILE, --restart DIR or --data DIR (to"
                     " start the members from climatological training states)")
  if "sample" in initial_ds.dims:
    if members is not None and members != initial_ds.sizes["sample"]:
      raise ValueError(f"--members {members} but the initial ensemble has"
                       f" {initial_ds.sizes['sample']} members")
    members = initial_ds.sizes["sample"]
  members = members if members is not None else 8
  if model.layout is None:
    variables = state_variables(config) or tuple(initial_ds.data_vars)
  if is_point_table(observations):
    if error_std is not None:
      raise ValueError("--error-std is for gridded observations; a point"
                       " table carries each observation's error_std")
    obs = api.observations_from_points(
        observations, model, initial_ds, variables=variables, dt=dt,
        num_steps=steps, method=method)
  else:
    obs = api.observations_from_dataset(
        api.open_dataset(observations), model, initial_ds, error_std=error_std,
        variables=variables, dt=dt, num_steps=steps,
        where=f"observations {observations}")
  truth_ds = api.open_dataset(truth) if truth is not None else None
  if truth_ds is not None:
    api.check_truth(truth_ds, obs)
  analysis = api.assimilate(model, controller, obs, initial_ds, members, seed,
                            progress="analysis" if progress else False)
  background = api.assimilate(model, None, obs, initial_ds, members, seed,
                              progress="background" if progress else False)
  stats_out = {"monitoring": api.monitoring(obs, background, analysis),
               "start_time": time_lib.format_time(obs.times[0]),
               "steps": obs.num_steps, "members": members,
               "initial": note or str(restart or initial),
               "first_step": analysis.attrs["first_step"]}
  if truth_ds is not None:
    stats_out["scores"] = {"controlled": api.score(analysis, truth_ds),
                           "unguided": api.score(background, truth_ds)}
  _write(out_dir, analysis, background, obs, stats_out, model.history_length)
  return stats_out


def _write(out_dir, analysis, background, obs, stats, history_length):
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  for name, ds in (("analysis", analysis), ("background", background),
                   ("restart", api.restart_state(analysis, history_length))):
    api.write_analysis(ds, out / f"{name}.nc", overwrite=True)
  write_json(out / "monitoring.json", stats)
  text = api.monitoring_markdown(stats["monitoring"])
  if "scores" in stats:
    text += "\n| method | variable | RMSE | CRPS | spread/skill |\n" \
            "|---|---|---|---|---|\n" + "".join(
                f"| {m} | {v} | {s['rmse']:.4f} | {s['crps']:.4f} |"
                f" {s['spread_skill']:.3f} |\n"
                for m, by in stats["scores"].items() for v, s in by.items())
  atomic_write(out / "monitoring.md", lambda f: f.write(text.encode()))
  plots.plot_analysis(analysis, obs, out / "analysis.png")
