"""The `gencast-control` command line.

    gencast-control demo                      # KS assimilation with shipped models
    gencast-control simulate --config ks --out data/ks
    gencast-control train-ardm --config ks --data data/ks --out ks_ardm.npz
    gencast-control train-controller --config ks --data data/ks --ardm ks_ardm.npz --out ks_controller.npz
    gencast-control train-controller --config gencast_1deg_train --out runs/gencast_1deg/controller.npz [--distributed] [--tiny]
    gencast-control train --config ks --out runs/ks   # all three steps
    gencast-control assimilate --ardm A --controller C --observations obs.csv --initial x0.nc --out results/mine
    gencast-control evaluate --config ks --out results/eval
    gencast-control benchmark --mode quick --out results/benchmark
    gencast-control pilot --config era5_pilot --data D --ardm A --controller C
    gencast-control data probe STORE

--config takes a built-in name (configs/NAME.py) or a path to a .py file with
get_config(); --set a.b=value overrides any field (repeatable).

Expected failures (bad input, unwritable outputs, a diverged or mismatched
training run) print one line `gencast-control CMD: error: ...` and exit 2
(GENCAST_CONTROL_TRACEBACK=1 shows the traceback); an interrupted command
exits 130 and keeps its finished work.

Finished work is never replaced or mixed: a command whose outputs exist (a
checkpoint, or any of the files it writes into its results folder) refuses
before any work unless given --overwrite (an unfinished training run resumes
from its work folder without it); no output may be, contain or lie inside
an input (--data, --restart, --initial, --observations, --truth,
checkpoints); every file is written atomically (temporary file, then
rename), figures included; and the folder a command writes into (results,
or a training work folder) is locked while it runs: a second run into it
fails naming the first (pid, host, command line). The lock is an flock on
FOLDER/.lock, so a killed run leaves no stale lock.

Tables carry their provenance: benchmark, evaluate and pilot write their
markdown table under a header naming the command, date, machine, versions
and commit (evaluation/provenance.py); with --publish the table also goes to
docs/results/COMMAND_CONFIG.md of the checkout (replaced only with
--overwrite).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from gencast_control.evaluation import provenance

# What --overwrite replaces for the commands that write a results folder.
OUT_RESULTS = "the results of an earlier run in --out"


def _add_config(p: argparse.ArgumentParser, default: str = "ks"):
  p.add_argument("--config", default=default,
                 help="built-in config name (configs/NAME.py) or a path to a"
                 " .py file defining get_config() (default: %(default)s)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a config field, e.g. --set"
                 " controller_training.num_steps=100 (repeatable)")


def _config(args):
  from gencast_control.core.config import load_config
  return load_config(args.config, args.set)


def _inputs(args, *flags: str) -> tuple[tuple[str, str], ...]:
  """(flag, path) of the given input flags that the command was given."""
  return tuple((flag, getattr(args, flag.lstrip("-").replace("-", "_")))
               for flag in flags
               if getattr(args, flag.lstrip("-").replace("-", "_"), None))


def _check_outputs(args, *outputs, inputs=()):
  """Fails before any work on outputs that cannot be written.

  outputs: (path, "file" | "folder", flag[, writes]); None paths are
    skipped. A file that exists, or a folder holding any of `writes` (the
    names the command writes there), is refused unless --overwrite; a folder
    with `writes` is locked for the rest of the command (a second run into
    it fails naming this one), and created.
  inputs: (flag, path) pairs the command reads (see _inputs): no output may
    be, contain or lie inside one (checkpoint.check_output).
  """
  from gencast_control.core import workdir_lock
  from gencast_control.core.checkpoint import check_output
  for path, kind, flag, *writes in outputs:
    if path is None:
      continue
    check_output(path, kind, inputs, flag, overwrite=True)  # all but exists
    if writes:
      args.held.enter_context(workdir_lock.locked(path, args.command_line))
    check_output(path, kind, inputs, flag, writes=writes[0] if writes else None,
                 overwrite=getattr(args, "overwrite", False))


def _workdir(args, inputs=()):
  """--workdir, or OUT.work, locked for the rest of the command; emptied of
  any earlier state with --fresh."""
  from gencast_control.core import workdir_lock
  from gencast_control.training import sharding, training_loop
  workdir = args.workdir or Path(args.out).with_suffix(".work")
  _check_outputs(args, (workdir, "folder", "--workdir"), inputs=inputs)
  if sharding.is_primary():  # the others share process 0's folder
    args.held.enter_context(workdir_lock.locked(workdir, args.command_line))
  if args.fresh:
    training_loop.clear_workdir(workdir)
  return workdir


def _check_publish(args, paths):
  """Fails before any work on tables --publish cannot write."""
  provenance.check_publish(list(paths), getattr(args, "overwrite", False))


def _add_fresh(p: argparse.ArgumentParser):
  p.add_argument("--fresh", action="store_true",
                 help="delete the work folder's resumable state first (a run"
                 " refuses to resume the state of another run)")


def _cmd_demo(args):
  from gencast_control import demo
  checkpoints = None
  if args.ardm or args.controller:
    if not (args.ardm and args.controller):
      raise ValueError("give both --ardm and --controller, or neither")
    checkpoints = (Path(args.ardm), Path(args.controller))
  config = _config(args)
  writes = demo.OUTPUT_FILES + ((
      f"retrained/{config.name}_controller.npz",) if args.retrain else ())
  _check_outputs(args, (args.out, "folder", "--out", writes),
                 inputs=_inputs(args, "--ardm", "--controller"))
  demo.run_demo(config, args.out, retrain=args.retrain,
                checkpoints=checkpoints)


def _cmd_simulate(args):
  from gencast_control.systems import pipeline
  config = _config(args)
  splits = [f"{split}{suffix}" for split in ("train", "validation", "test")
            for suffix in (".nc", ".zarr")]
  _check_outputs(args, (args.out, "folder", "--out", splits))
  paths = pipeline.simulate(config, args.out, args.format)
  for split, path in paths.items():
    print(f"{split}: {path}")


def _cmd_train_ardm(args):
  from gencast_control.systems import pipeline
  config = _config(args)
  inputs = _inputs(args, "--data")
  outputs = [(args.out, "file", "--out")]
  if pipeline.is_gencast_config(config):
    from gencast_control.adapters.gencast.training_config import (
        companion_paths)
    from gencast_control.configs.gencast_assets import STATS_FILES
    stats, example = companion_paths(args.out)
    outputs += [(stats, "folder", "--out's statistics",
                 tuple(f"{name}.nc" for name in STATS_FILES)),
                (example, "file", "--out's example")]
  if args.init:
    inputs = inputs + _inputs(args, "--init")
  _check_outputs(args, *outputs, inputs=inputs)
  pipeline.train_ardm_step(config, args.data, args.out,
                           _workdir(args, inputs), init=args.init)
  print(f"wrote {args.out}")


def _cmd_train_controller(args):
  from gencast_control.adapters.gencast import job as gencast_job
  from gencast_control.training import sharding
  if args.distributed:
    sharding.initialize_distributed(force=True)
  if args.devices is not None:
    args.set = args.set + ["controller_training.shard_batch=True",
                           f"controller_training.num_devices={args.devices}"]
  config = _config(args)
  if isinstance(config, gencast_job.GenCastJobConfig):
    # GenCast: the config names the checkpoint and the ERA5 store.
    if args.ardm or args.data:
      raise ValueError(
          f"--ardm and --data are for grid configs; {args.config} names"
          " GenCast's weights and examples (--set checkpoint=PATH, --set"
          " stats=DIR, --set store=STORE)")
    _check_outputs(args, (args.out, "file", "--out"))
    gencast_job.train_controller_step(config, args.out, _workdir(args),
                                      tiny=args.tiny)
  else:
    from gencast_control.systems import pipeline
    if args.tiny:
      raise ValueError(f"--tiny is for GenCast configs (e.g."
                       f" gencast_1deg_train), not {args.config}")
    if not (args.ardm and args.data):
      raise ValueError(f"train-controller --config {args.config} needs"
                       " --data (training splits) and --ardm (the frozen"
                       " ARDM checkpoint)")
    inputs = _inputs(args, "--ardm", "--data")
    _check_outputs(args, (args.out, "file", "--out"), inputs=inputs)
    pipeline.train_controller_step(config, args.ardm, args.data, args.out,
                                   _workdir(args, inputs))
  if sharding.is_primary():
    print(f"wrote {args.out}")


def _cmd_train(args):
  from gencast_control import demo
  from gencast_control.core import workdir_lock
  from gencast_control.training import training_loop
  config = _config(args)
  # Resumable like the training steps: only the final checkpoint, a
  # finished run's, needs --overwrite.
  _check_outputs(args, (args.out, "folder", "--out",
                        (f"{config.name}_controller.npz",)))
  if args.fresh:
    for work in ("work_ardm", "work_controller"):
      args.held.enter_context(workdir_lock.locked(Path(args.out) / work,
                                                  args.command_line))
      training_loop.clear_workdir(Path(args.out) / work)
  ardm, controller = demo.build_checkpoints(config, args.out)
  print(f"wrote {ardm} and {controller}")


def _requested(overrides, field: str) -> float | None:
  """The value a --set override gives `field`, if any (numbers only)."""
  for item in overrides:
    name, _, value = item.partition("=")
    if name.strip() == field:
      try:
        return float(value)
      except ValueError:
        return None
  return None


def _cmd_assimilate(args):
  from gencast_control import assimilate_files
  config = _config(args)
  _check_outputs(args, (args.out, "folder", "--out",
                        assimilate_files.OUTPUT_FILES),
                 inputs=_inputs(args, "--observations", "--initial",
                                "--truth", "--restart", "--data", "--example",
                                "--stats", "--ardm", "--controller"))
  error_std = None
  if args.error_std:
    error_std = {}
    for item in args.error_std:
      name, _, value = item.rpartition("=")
      try:
        error_std[name or "*"] = float(value)
      except ValueError:
        raise ValueError(f"--error-std {item!r} must be STD or VAR=STD")
    if "*" in error_std:
      error_std = error_std["*"]
  stats = assimilate_files.run(
      config, args.ardm, args.controller, args.observations, args.out,
      initial=args.initial, restart=args.restart, data_dir=args.data,
      truth=args.truth, members=args.members, steps=args.steps,
      error_std=error_std, method=args.operator, seed=args.seed,
      stats=args.stats, example=args.example,
      requested_dt=_requested(args.set, "pde.model_dt"))
  from gencast_control import api
  print(api.monitoring_markdown(stats["monitoring"]))
  for method, by_var in stats.get("scores", {}).items():
    for v, s in by_var.items():
      print(f"{method:>10} {v}: RMSE {s['rmse']:.4f}  CRPS {s['crps']:.4f}"
            f"  spread/skill {s['spread_skill']:.3f}")
  print(f"wrote analysis.nc, background.nc, restart.nc, monitoring.json/.md"
        f" and analysis.png to {args.out}")


def _cmd_benchmark(args):
  from gencast_control.evaluation import benchmark
  _check_outputs(args, (args.out, "folder", "--out", benchmark.OUTPUT_FILES),
                 inputs=_inputs(args, "--checkpoints"))
  publish = None
  if args.publish:
    publish = benchmark.publish_paths(args.config, args.set, args.mode,
                                      args.start, args.split)
    _check_publish(args, publish.values())
  size = {k: v for k, v in (("num_trajectories", args.trajectories),
                            ("num_steps", args.steps),
                            ("ensemble_size", args.members)) if v is not None}
  results = benchmark.run_benchmark(
      args.out, args.config, args.mode, args.method or benchmark.METHODS,
      args.regime, args.set, args.checkpoints, size, start=args.start,
      burn_in=args.burn_in, split=args.split, command=args.command_line,
      publish=publish)
  print(benchmark.markdown_report(results))
  for path in results["paths"]:
    print(f"wrote {path}")


def _cmd_evaluate(args):
  from gencast_control.evaluation import forecasts
  from gencast_control.evaluation import per_regime as evaluation
  from gencast_control.systems import pipeline
  from gencast_control.systems.truth import (load_test_window,
                                             test_trajectories)
  from gencast_control.systems.registry import get_system
  config = _config(args)
  _check_outputs(args, (args.out, "folder", "--out", evaluation.OUTPUT_FILES),
                 inputs=_inputs(args, "--ardm", "--controller", "--data"))
  publish = evaluation.publish_path(config.name) if args.publish else None
  if publish:
    _check_publish(args, [publish])
  regimes = args.regime or [r.name for r in config.regimes]
  for name in regimes:
    config.regime(name)  # fails early on an unknown name
  if get_system(config.system).generate is None and not args.data:
    raise ValueError(f"{config.system} configs need --data: the system has"
                     " no solver to draw test trajectories from (for ERA5,"
                     " the folder written by `gencast-control simulate"
                     " --config era5_pilot`)")
  from gencast_control.baselines.filters import ARDM_METHODS
  solver_methods = [m for m in args.method or () if m not in ARDM_METHODS]
  if solver_methods and get_system(config.system).model_step is None:
    raise ValueError(f"--method {solver_methods[0]} needs the true solver,"
                     f" which the {config.system} system does not have")
  default_ardm, default_controller = pipeline.shipped_checkpoints(config.name)
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, args.ardm or default_ardm, args.controller or default_controller)
  weights = None
  if args.data:
    from gencast_control.systems.experiment import state_variables
    config = dataclasses.replace(config, regimes=tuple(
        pipeline.regimes_in_state_units(config.regimes, args.data,
                                        state_variables(config))))
    truth = load_test_window(config, args.data)
    weights = forecasts.spatial_weights(config, args.data)
  else:
    truth = test_trajectories(config)
  rows = evaluation.evaluate_regimes(config, ardm, controller_config, params,
                                     truth, regimes,
                                     config.assimilation.ensemble_size,
                                     weights=weights,
                                     methods=args.method or ())
  print(evaluation.markdown_table(rows))
  steps = truth.shape[1] - ardm.history_length
  note = (f"{truth.shape[0]} held-out trajectories x {steps} steps,"
          f" {config.assimilation.ensemble_size} members from the true"
          f" state; scores over t = 1..{steps}; ratios: each method's over"
          " the controller's.")
  for path in evaluation.write_evaluation(
      rows, args.out, args.command_line,
      f"Controller vs unguided ARDM: {config.name}", note, publish).values():
    print(f"wrote {path}")


def _cmd_pilot(args):
  from gencast_control.evaluation import era5_pilot
  _check_outputs(args, (args.out, "folder", "--out", era5_pilot.OUTPUT_FILES),
                 inputs=_inputs(args, "--data", "--ardm", "--controller"))
  config = _config(args)
  publish = None
  if args.publish:
    publish = era5_pilot.publish_path(config.name, args.start, args.split)
    _check_publish(args, [publish])
  era5_pilot.run_pilot(config, args.data, args.ardm, args.controller,
                       args.out, args.regime, start=args.start,
                       split=args.split, methods=args.method,
                       command=args.command_line, publish=publish)


def _cmd_data_probe(args):
  from gencast_control.data import era5_store
  print(era5_store.probe_store(args.store, timeout_s=args.timeout))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="gencast-control",
      description="Control-augmented autoregressive diffusion for data"
      " assimilation (Srivastava et al. 2025, arXiv 2510.06637).")
  from gencast_control import __version__
  parser.add_argument("--version", action="version",
                      version=f"%(prog)s {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("demo", help="the main job: KS assimilation with the"
                     " shipped ARDM and controller; prints a table, writes a"
                     " plot and NetCDF")
  _add_config(p)
  p.add_argument("--out", default="results/demo", help="results folder")
  p.add_argument("--retrain", action="store_true",
                 help="rebuild the ARDM and controller from scratch first")
  p.add_argument("--ardm", help="use this ARDM checkpoint instead")
  p.add_argument("--controller", help="use this controller checkpoint instead")
  provenance.add_overwrite_argument(p, OUT_RESULTS)
  p.set_defaults(func=_cmd_demo)

  p = sub.add_parser("simulate", help="generate train/validation/test"
                     " trajectories of the config's PDE")
  _add_config(p)
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--format", choices=("netcdf", "zarr"), default="netcdf")
  provenance.add_overwrite_argument(p, "the splits in --out")
  p.set_defaults(func=_cmd_simulate)

  p = sub.add_parser("train-ardm", help="pretrain the grid ARDM (EDM loss) on"
                     " a folder of trajectory splits")
  _add_config(p)
  p.add_argument("--data", required=True, help="folder with train.nc/.zarr")
  p.add_argument("--out", required=True, help="ARDM checkpoint (.npz); a"
                 " GenCast config writes DeepMind's CheckPoint, with"
                 " OUT.stats/ and OUT.example.nc beside it")
  p.add_argument("--init", help="GenCast configs: fine-tune this GenCast"
                 " checkpoint (DeepMind's .npz) instead of random weights")
  p.add_argument("--workdir", help="resumable training state (default:"
                 " OUT.work)")
  _add_fresh(p)
  provenance.add_overwrite_argument(
      p, "an existing --out checkpoint (a finished run's; an unfinished run"
      " resumes from its work folder without it)")
  p.set_defaults(func=_cmd_train_ardm)

  p = sub.add_parser(
      "train-controller", help="train the controller against a frozen ARDM"
      " checkpoint, or against GenCast (config gencast_1deg_train)",
      description="Trains the controller against a frozen ARDM: a grid"
      " config's checkpoint (--ardm) on its training splits (--data), or, for"
      " a GenCast config (gencast_1deg_train), GenCast on ERA5 examples"
      " drawn from a WeatherBench2 store: the cloud training job, on one host"
      " or many (--distributed). Running it again resumes from the work"
      " folder; losses go to log.jsonl and, with tensorboardX installed,"
      " TensorBoard event files in the work folder.")
  _add_config(p)
  p.add_argument("--data", help="folder with the training splits (grid"
                 " configs)")
  p.add_argument("--ardm", help="ARDM checkpoint (.npz; grid configs)")
  p.add_argument("--out", required=True, help="controller checkpoint (.npz)")
  p.add_argument("--workdir", help="resumable training state (default:"
                 " OUT.work)")
  _add_fresh(p)
  provenance.add_overwrite_argument(
      p, "an existing --out checkpoint (a finished run's; an unfinished run"
      " resumes from its work folder without it)")
  p.add_argument("--devices", type=int, metavar="N",
                 help="split each batch over N devices (0: all devices, of"
                 " every process); the same as --set"
                 " controller_training.shard_batch=True --set"
                 " controller_training.num_devices=N. batch_size must be a"
                 " multiple of N")
  p.add_argument("--distributed", action="store_true",
                 help="first join a multi-host job with"
                 " jax.distributed.initialize (cluster auto-detection: Cloud"
                 " TPU, SLURM, mpirun, or JAX_COORDINATOR_ADDRESS,"
                 " JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
  p.add_argument("--tiny", action="store_true",
                 help="GenCast configs: an offline smoke test with the tiny"
                 " random GenCast and synthetic examples instead of the"
                 " checkpoint and the store")
  p.set_defaults(func=_cmd_train_controller)

  p = sub.add_parser("train", help="simulate + train-ardm + train-controller")
  _add_config(p)
  p.add_argument("--out", required=True, help="run folder")
  _add_fresh(p)
  provenance.add_overwrite_argument(
      p, "a finished run's checkpoints in --out (an unfinished run resumes"
      " without it)")
  p.set_defaults(func=_cmd_train)

  p = sub.add_parser(
      "assimilate", help="assimilate your own observations (a gridded"
      " NetCDF/zarr or a point table); writes the analysis ensemble, O-B/O-A"
      " monitoring statistics and a plot",
      description="Runs the controlled assimilation and the unguided forecast"
      " from the same initial members and keys. The run starts at the last"
      " time t_0 of the initial state and advances by the model's step (the"
      " one its checkpoint records, else the config's pde.model_dt; 12 h for"
      " GenCast);"
      " observation times must be t_0 + k dt (numbers, or dates for GenCast)."
      " GenCast: --ardm is DeepMind's checkpoint (a name, path or gs://) with"
      " --stats and --example. No truth needed.")
  _add_config(p)
  p.add_argument("--ardm", required=True,
                 help="ARDM checkpoint, or a shipped name (ks, kolmogorov);"
                 " with --stats/--example a GenCast checkpoint")
  p.add_argument("--controller", required=True,
                 help="controller checkpoint, or a shipped name")
  p.add_argument("--stats", help="GenCast: its normalisation statistics (a"
                 " folder, gs:// folder or 'bucket')")
  p.add_argument("--example", help="GenCast: an example in DeepMind's layout"
                 " (NetCDF path or registered name): grid, static inputs,"
                 " forcings, and the initial state without --initial")
  p.add_argument("--observations", required=True,
                 help="NetCDF/zarr on the model grid (dims time, *spatial;"
                 " NaN = unobserved) or a point table (.csv or NetCDF with"
                 " columns time, one per spatial dim, variable, value,"
                 " error_std)")
  p.add_argument("--initial", help="NetCDF with one state or an ensemble (a"
                 " `sample` dim); its last time is t_0")
  p.add_argument("--restart", metavar="DIR", help="continue from a previous"
                 " run's restart.nc (DA cycling)")
  p.add_argument("--data", help="without --initial/--restart: start the"
                 " members from random states of DIR's training split")
  p.add_argument("--truth", help="NetCDF with the true states (dims time,"
                 " *spatial): adds RMSE, CRPS and spread/skill")
  p.add_argument("--members", type=int, help="ensemble size (default: the"
                 " initial ensemble's, else 8)")
  p.add_argument("--steps", type=int, help="steps to run (default: to the"
                 " last observation time)")
  p.add_argument("--error-std", action="append", metavar="[VAR=]STD",
                 help="observation-error std of gridded observations"
                 " (default: per observation, from the file's variables"
                 " <VAR>_error_std)")
  p.add_argument("--operator", choices=("linear", "nearest"),
                 default="linear", help="H of the point observations in the"
                 " monitoring statistics (the controller always sees each"
                 " point at its nearest grid point)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="results/assimilate")
  provenance.add_overwrite_argument(p, OUT_RESULTS)
  p.set_defaults(func=_cmd_assimilate)

  p = sub.add_parser(
      "benchmark", help="DA benchmark: controller vs unguided, DPS, SDA,"
      " RePaint and EnKF for every observation regime and PDE; writes"
      " benchmark.csv/.json/.md and plots",
      description="Runs every method on the same held-out truth, the same"
      " observations and PRNG keys and the same sampler sub-steps, for every"
      " regime of every config with checkpoints (a config without them is"
      " skipped with a note). Scores: RMSE of the ensemble mean, fair CRPS,"
      " spread-skill, energy-spectrum error, a physics error (KS total"
      " variation, Kolmogorov enstrophy), wall-clock after compilation and"
      " XLA's memory estimate of the compiled program. --mode quick (default)"
      " runs a few short trajectories (minutes on 2 CPU cores); --mode full"
      " uses each config's `assimilation` sizes (see docs/benchmark.md).")
  p.add_argument("--config", action="extend", nargs="+",
                 help="config name or .py path (repeatable; default: ks and"
                 " kolmogorov, those with checkpoints)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="config override applied to every --config"
                 " (repeatable)")
  p.add_argument("--mode", choices=("quick", "full"), default="quick")
  p.add_argument("--start", choices=("truth", "cold"), default="truth",
                 help="members start from the true state, or (cold) each"
                 " from its own random climatological state")
  p.add_argument("--burn-in", type=int, default=None,
                 help="steps left out of the scores (default: steps // 5)")
  p.add_argument("--split", choices=("test", "validation"), default="test",
                 help="the truth: held-out test draws, or the validation"
                 " split's (compare candidate controllers there, never on"
                 " test)")
  p.add_argument("--method", "--methods", action="extend", nargs="+",
                 help="method (repeatable; default: controlled unguided dps"
                 " sda repaint enkf letkf letks letkf_ardm letks_ardm)")
  p.add_argument("--regime", action="extend", nargs="+",
                 help="regime name(s) (repeatable; default: all of the"
                 " config's)")
  p.add_argument("--checkpoints", help="folder with NAME_ardm.npz and"
                 " NAME_controller.npz (default: the shipped checkpoints)")
  p.add_argument("--trajectories", type=int, help="override the mode's"
                 " number of held-out trajectories")
  p.add_argument("--steps", type=int, help="override the mode's number of"
                 " assimilated steps")
  p.add_argument("--members", type=int, help="override the mode's ensemble"
                 " size (>= 2)")
  p.add_argument("--out", default="results/benchmark")
  provenance.add_publish_argument(
      p, "benchmark_CONFIG (one per config; _full, _cold, _validation for"
      " --mode full, --start cold, --split validation)")
  provenance.add_overwrite_argument(p, OUT_RESULTS)
  p.set_defaults(func=_cmd_benchmark)

  p = sub.add_parser("evaluate", help="controller vs unguided ARDM for every"
                     " observation regime: RMSE, CRPS, spread-skill,"
                     " wall-clock; writes JSON, markdown and a plot")
  _add_config(p)
  p.add_argument("--ardm", help="ARDM checkpoint (default: the shipped one)")
  p.add_argument("--controller", help="controller checkpoint (default: the"
                 " shipped one)")
  p.add_argument("--data", help="folder with a test split (default: fresh"
                 " trajectories from the solver)")
  p.add_argument("--regime", action="append",
                 help="regime name (repeatable; default: all of the config's)")
  p.add_argument("--method", action="append",
                 choices=("letkf", "letks", "enkf", "letkf_ardm",
                          "letks_ardm"),
                 help="also run a classical filter with the true solver, or"
                 " (_ardm) with the ARDM as its model (repeatable; letkf/letks"
                 " with their settings tuned on validation)")
  p.add_argument("--out", default="results/evaluate")
  provenance.add_publish_argument(p, "evaluate_CONFIG")
  provenance.add_overwrite_argument(p, OUT_RESULTS)
  p.set_defaults(func=_cmd_evaluate)

  p = sub.add_parser("pilot", help="ERA5 / Held-Suarez pilot: controller vs"
                     " unguided ARDM vs DPS (and the perfect-model LETKF on"
                     " Held-Suarez) per observing system; latitude-weighted"
                     " RMSE and fair CRPS; writes JSON, markdown, plots, maps")
  _add_config(p, default="era5_pilot")
  p.add_argument("--data", required=True, help="folder with the test split")
  p.add_argument("--ardm", required=True)
  p.add_argument("--controller", required=True)
  p.add_argument("--regime", action="append",
                 help="regime name (repeatable; default: all of the config's)")
  p.add_argument("--start", choices=("cold", "truth"), default="cold",
                 help="cold: each member from its own climatological state"
                 " (default); truth: every member from the true state")
  p.add_argument("--method", action="append",
                 choices=("unguided", "controlled", "dps", "letkf"),
                 help="method to run (repeatable; default: all; the unguided"
                 " forecast always runs, as the reference of the times)")
  p.add_argument("--split", choices=("test", "validation"), default="test",
                 help="the trajectories scored: test (default) or validation"
                 " (to choose settings without touching the test data; its"
                 " cold starts come from the same split)")
  p.add_argument("--out", default="results/era5_pilot")
  provenance.add_publish_argument(
      p, "pilot_CONFIG (_truth, _validation for --start truth, --split"
      " validation)")
  provenance.add_overwrite_argument(p, OUT_RESULTS)
  p.set_defaults(func=_cmd_pilot)

  p = sub.add_parser("data", help="data utilities (WeatherBench2 stores)")
  data_sub = p.add_subparsers(dest="data_command", required=True)
  q = data_sub.add_parser("probe", help="print dims, variables, latitude"
                          " order and time range of a zarr store")
  q.add_argument("store", help="registry name, gs:// path or local path")
  q.add_argument("--timeout", type=float, default=30.0,
                 help="seconds before giving up on the network")
  q.set_defaults(func=_cmd_data_probe)
  return parser


def _user_errors() -> tuple[type[BaseException], ...]:
  """The exceptions that mean bad input or a failed run, not a bug."""
  from gencast_control.training.sharding import ClusterError
  from gencast_control.training.training_loop import TrainingDivergedError
  return (ValueError, OSError, ImportError, TrainingDivergedError,
          ClusterError)


def report_errors(name: str, run, interrupted: str = "finished work is"
                  " kept") -> int:
  """run() with bad input or a failed run printed as one line, `NAME:
  error: ...` (exit 2), and an interrupt as `NAME: interrupted; INTERRUPTED`
  (exit 130); the exit code of run() otherwise (0 for None).
  GENCAST_CONTROL_TRACEBACK=1 shows the traceback instead. The benchmarks/
  scripts end with it too."""
  try:
    return run() or 0
  except KeyboardInterrupt:
    print(f"{name}: interrupted; {interrupted}", file=sys.stderr)
    return 130
  except _user_errors() as e:
    if os.environ.get("GENCAST_CONTROL_TRACEBACK"):
      raise
    message = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    if isinstance(e, OSError) and e.filename and e.strerror:
      message = f"{e.strerror}: {e.filename}"
    print(f"{name}: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  args.command_line = shlex.join(  # names this run in its folder locks
      ["gencast-control"] + list(sys.argv[1:] if argv is None else argv))

  def run():
    with contextlib.ExitStack() as args.held:  # folder locks, released here
      args.func(args)

  return report_errors(f"gencast-control {args.command}", run,
                       "finished work is kept (training resumes from its work"
                       " folder)")


if __name__ == "__main__":
  sys.exit(main())
