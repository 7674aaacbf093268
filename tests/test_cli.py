"""The command line: demo on the shipped models and a tiny train pipeline."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gencast_control import cli
from tests.conftest import TINY_CLI

SMALL_RUN = ["--set", "assimilation.num_steps=60",
             "--set", "assimilation.ensemble_size=2",
             "--set", "assimilation.num_trajectories=1"]



def test_demo_on_shipped_checkpoints(tmp_path, capsys):
  assert cli.main(["demo", "--out", str(tmp_path)] + SMALL_RUN) == 0
  out = capsys.readouterr().out
  assert "| controlled |" in out and "| unguided |" in out
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["scores"]["controlled"]["rmse"] < \
      metrics["scores"]["unguided"]["rmse"]
  # The engine's scores, KS diagnostics included, in the JSON and the table.
  controlled = metrics["scores"]["controlled"]
  for key in ("spectrum_error", "physics_error", "rmse_a", "spread_a"):
    assert np.isfinite(controlled[key]), key
  assert controlled["diverged"] == 0
  assert len(controlled["crps_per_time"]) == 61
  assert sum(controlled["rank_histogram"]) == pytest.approx(1.0)
  assert "spectrum err" in (tmp_path / "metrics.md").read_text()
  ds = xr.open_dataset(tmp_path / "assimilation.nc")
  assert ds["u_controlled"].dims == ("sample", "time", "x")
  assert ds["u_controlled"].shape == (2, 61, 128)
  assert np.isnan(ds["u_observed"].values).mean() > 0.5
  assert (tmp_path / "assimilation.png").stat().st_size > 10_000


def test_train_pipeline_end_to_end(tiny_run, tmp_path, capsys):
  # conftest's tiny_run: simulate, train-ardm and train-controller by the CLI
  data = Path(tiny_run["D"])
  assert (data / "train.nc").exists() and (data / "test.nc").exists()
  assert cli.main(["demo", "--ardm", tiny_run["A"], "--controller",
                   tiny_run["C"], "--out", str(tmp_path / "res")]
                  + TINY_CLI) == 0
  metrics = json.loads((tmp_path / "res" / "metrics.json").read_text())
  assert np.isfinite(metrics["scores"]["controlled"]["rmse"])


def test_errors_are_reported_without_traceback(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  assert cli.main(["train-ardm", "--data", str(tmp_path / "empty"), "--out",
                   str(tmp_path / "a.npz")]) == 2
  assert "no train.nc or train.zarr" in capsys.readouterr().err
  assert cli.main(["demo", "--set", "nope=1"]) == 2
  assert "unknown config field" in capsys.readouterr().err
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"garbage")
  assert cli.main(["demo", "--ardm", str(bad), "--controller", str(bad),
                   "--out", str(tmp_path / "demo")]) == 2
  assert "corrupt" in capsys.readouterr().err


def test_benchmark_scripts_report_bad_input_in_one_line(capsys):
  """The benchmarks/ scripts end with cli.report_errors: bad input is one
  line naming the script (exit 2), an interrupt exit 130, a bug a
  traceback."""
  root = Path(__file__).resolve().parents[1]
  script = root / "benchmarks" / "harm_probe.py"
  env = dict(os.environ, PYTHONPATH=str(root))  # the checkout under test
  env.pop("GENCAST_CONTROL_TRACEBACK", None)
  run = subprocess.run([sys.executable, str(script), "--config", "nope"],
                       capture_output=True, text=True, timeout=120, env=env)
  assert run.returncode == 2 and "Traceback" not in run.stderr
  assert run.stderr.strip().splitlines()[-1] == (
      "benchmarks/harm_probe.py: error: unknown config"
      " 'nope': give a path to a .py file or a module name under configs/")
  for script in sorted((root / "benchmarks").glob("*.py")):
    tail = script.read_text().split('if __name__ == "__main__":')[-1]
    assert f'report_errors("benchmarks/{script.name}", main)' in tail, script

  def interrupted():
    raise KeyboardInterrupt

  def bug():
    raise RuntimeError("a bug")

  assert cli.report_errors("x.py", interrupted) == 130
  assert "x.py: interrupted" in capsys.readouterr().err
  with pytest.raises(RuntimeError):
    cli.report_errors("x.py", bug)
  assert cli.report_errors("x.py", lambda: None) == 0


def test_ablation_refuses_an_earlier_run_with_other_settings(
    benchmark_script, tmp_path):
  """benchmarks/controller_ablation.py resumes only its own settings'
  variants; other settings are bad input (ValueError: one line, exit 2)."""
  ablation = benchmark_script("controller_ablation")
  settings = {"train_steps": 200, "steps": 100, "variants": {}}
  path = tmp_path / "ablation.json"
  assert ablation._load_previous(path, settings) is None
  path.write_text(json.dumps(dict(settings, variants={"a": {}})))
  assert ablation._load_previous(path, settings)["variants"] == {"a": {}}
  with pytest.raises(ValueError, match="written with other settings"):
    ablation._load_previous(path, dict(settings, train_steps=50))


def test_help_lists_subcommands(capsys):
  with pytest.raises(SystemExit):
    cli.main(["--help"])
  out = capsys.readouterr().out
  for command in ("demo", "simulate", "train-ardm", "train-controller",
                  "assimilate", "data"):
    assert command in out


def test_evaluate_writes_table_json_and_plot(tmp_path, capsys, monkeypatch):
  from gencast_control.evaluation import provenance
  monkeypatch.setattr(provenance, "results_dir", lambda: tmp_path / "docs")
  assert cli.main(["evaluate", "--out", str(tmp_path), "--regime",
                   "random_25pct", "--regime", "every4_25pct", "--method",
                   "letks", "--method", "letkf_ardm", "--publish"]
                  + SMALL_RUN) == 0
  assert "| random_25pct |" in capsys.readouterr().out
  rows = json.loads((tmp_path / "evaluation.json").read_text())
  assert set(rows) == {"random_25pct", "every4_25pct"}
  # the classical smoother on the same truth and observations, its lag the
  # controller's preview H - 1, labelled as not tuned for this ensemble size
  letks = rows["random_25pct"]["letks"]
  assert letks["label"] == "letks (untuned, lag 3)"
  assert len(letks["rmse_per_time"]) == 61 and np.isfinite(letks["rmse_a"])
  # and the LETKF with the shipped ARDM as its model, on the same keys
  same_model = rows["random_25pct"]["letkf_ardm"]
  assert same_model["label"] == "letkf_ardm (untuned)"
  assert len(same_model["rmse_per_time"]) == 61
  assert np.isfinite(same_model["rmse_a"])
  curve = rows["random_25pct"]["controlled"]["rmse_per_time"]
  assert len(curve) == 61 and curve[0] == 0.0  # t = 0..T, from the truth
  assert min(curve[1:]) > 0.0
  assert (tmp_path / "rmse_vs_time.png").exists()
  scores = rows["random_25pct"]["controlled"]
  assert np.isfinite([scores["spectrum_error"], scores["physics_error"]]).all()
  markdown = (tmp_path / "evaluation.md").read_text()
  # header, rule and one line per regime and method
  assert sum(line.startswith("|") for line in markdown.splitlines()) == 10
  assert "| letks (untuned, lag 3) |" in markdown
  assert "physics err" in markdown and "Pooled:" in markdown
  header = provenance.parse_header(markdown)  # command, date, ..., commit
  assert header["Command"].startswith("`gencast-control evaluate --out")
  assert (tmp_path / "docs" / "evaluate_ks.md").read_text() == markdown
  table = list(csv.DictReader((tmp_path / "evaluation.csv").open()))
  assert [(r["regime"], r["method"]) for r in table][:2] == [
      ("random_25pct", "unguided"), ("random_25pct", "controlled")]
  assert float(table[1]["rmse_vs_controlled"]) == 1.0


def test_kolmogorov_pipeline_runs_on_a_tiny_grid(tmp_path):
  tiny = ["--config", "kolmogorov",
          "--set", "pde.resolution=16", "--set", "pde.output_resolution=8",
          "--set", "pde.solver_dt=0.0625", "--set", "pde.model_dt=0.25",
          "--set", "ardm.state_shape=(8, 8, 1)",
          "--set", "ardm.network.width=8", "--set", "ardm.network.num_blocks=1",
          "--set", "ardm.sampler.method=euler",
          "--set", "ardm.sampler.num_steps=2",
          "--set", "controller.network.width=4",
          "--set", "data.num_train=2", "--set", "data.num_validation=1",
          "--set", "data.num_test=1", "--set", "data.num_steps=12",
          "--set", "data.burn_in_steps=4",
          "--set", "ardm_training.num_steps=5",
          "--set", "controller_training.num_steps=2",
          "--set", "controller_training.batch_size=2",
          "--set", "controller_training.spinup=0",
          "--set", "controller_training.window=1",
          "--set", "controller_training.validate_every=0",
          "--set", "assimilation.num_steps=4",
          "--set", "assimilation.ensemble_size=2",
          "--set", "assimilation.num_trajectories=1"]
  assert cli.main(["train", "--out", str(tmp_path)] + tiny) == 0
  assert cli.main(["demo", "--ardm",
                   str(tmp_path / "kolmogorov_ardm.npz"), "--controller",
                   str(tmp_path / "kolmogorov_controller.npz"), "--out",
                   str(tmp_path / "res")] + tiny) == 0
  ds = xr.open_dataset(tmp_path / "res" / "assimilation.nc")
  assert ds["vorticity_controlled"].dims == ("sample", "time", "x", "y")
  assert (tmp_path / "res" / "assimilation.png").exists()


def test_held_suarez_without_dinosaur_is_a_one_line_error(monkeypatch, tmp_path,
                                                          capsys):
  from gencast_control import cli
  from gencast_control.systems import held_suarez

  def missing():
    raise ImportError(f"{held_suarez.INSTALL_HINT} (No module named"
                      " 'dinosaur')")
  monkeypatch.setattr(held_suarez, "import_dinosaur", missing)
  assert cli.main(["simulate", "--config", "heldsuarez", "--out",
                   str(tmp_path / "hs")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'pip install -e ".[sphere]"' in err


def test_train_controller_runs_the_gencast_job_for_a_gencast_config(
    monkeypatch, tmp_path, capsys):
  """`train-controller --config gencast_1deg_train` is GenCast's training job
  (its run: tests/test_gencast_adapter.py, needs DeepMind's code); a grid
  config keeps needing --data and --ardm."""
  from gencast_control.adapters.gencast import job as gencast_job
  calls = []
  monkeypatch.setattr(gencast_job, "train_controller_step",
                      lambda *a, **k: calls.append((a, k)))
  out = tmp_path / "run" / "controller.npz"
  assert cli.main(["train-controller", "--config", "gencast_1deg_train",
                   "--tiny", "--out", str(out), "--devices", "2",
                   "--set", "controller_training.num_steps=3"]) == 0
  (config, out_path, workdir), kwargs = calls[0]
  assert isinstance(config, gencast_job.GenCastJobConfig)
  assert (config.controller_training.num_steps,
          config.controller_training.num_devices) == (3, 2)
  assert (Path(out_path), Path(workdir), kwargs) == (
      out, tmp_path / "run" / "controller.work", {"tiny": True})
  for argv, message in [
      (["--config", "gencast_1deg_train", "--ardm", "a.npz"],
       "--ardm and --data are for grid configs"),
      (["--config", "ks"], "needs --data (training splits) and --ardm"),
      (["--config", "ks", "--data", "d", "--ardm", "a.npz", "--tiny"],
       "--tiny is for GenCast configs")]:
    capsys.readouterr()
    assert cli.main(["train-controller", "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
