"""Finished work is never overwritten or mixed: existing outputs need
--overwrite, no output is or contains an input, figures are written
atomically, and a work folder is locked by the run using it."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gencast_control import cli
from gencast_control.core import workdir_lock
from gencast_control.core.checkpoint import (OutputExistsError,
                                             OutputPathError, check_output)
from tests.conftest import TINY_CLI

HOLD_LOCK = ("import sys, time\n"
             "from gencast_control.core import workdir_lock\n"
             "with workdir_lock.locked(sys.argv[1], 'holder of the test'):\n"
             "  print('locked', flush=True)\n"
             "  time.sleep(120)\n")


def _run(argv, capsys):
  capsys.readouterr()
  code = cli.main(argv)
  return code, capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
          if p.is_file()}


@pytest.fixture
def holder(tmp_path):
  """Starts a process holding the lock of a folder; yields (folder, proc)."""
  procs = []

  def start(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)],
                            stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout.readline().strip() == "locked"
    return proc
  yield start
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
    proc.wait()


def test_a_second_assimilate_refuses_and_keeps_the_first_run(
    tiny_run, tmp_path, capsys):
  truth = xr.open_dataset(Path(tiny_run["D"]) / "test.nc").isel(
      trajectory=0, drop=True).load()
  inputs = tmp_path / "inputs"
  inputs.mkdir()
  truth.isel(time=[0]).to_netcdf(inputs / "initial.nc")
  mask = np.random.default_rng(0).random(truth["u"].shape) < 0.3
  truth.where(xr.DataArray(mask, dims=truth["u"].dims)).isel(
      time=slice(0, 4)).to_netcdf(inputs / "obs.nc")
  out = tmp_path / "run"
  argv = ["assimilate", "--ardm", tiny_run["A"], "--controller",
          tiny_run["C"], "--observations", str(inputs / "obs.nc"),
          "--error-std", "0.1", "--members", "2"] + TINY_CLI
  first = argv + ["--initial", str(inputs / "initial.nc"), "--out", str(out)]
  code, err = _run(first, capsys)
  assert code == 0, err
  before = _snapshot(out)
  assert {"analysis.nc", "restart.nc", "analysis.png"} <= set(before)
  assert not (out / workdir_lock.LOCK_NAME).exists()  # released

  # The same run again, and a cycle that would write over its restart.
  for again, message in [
      (first, f"--out {out} already holds analysis.nc of an earlier run; give"
       " another folder, or --overwrite to replace it"),
      (argv + ["--restart", str(out), "--out", str(out), "--overwrite"],
       f"--out {out} is also an input of this run (--restart {out})"),
      (argv + ["--initial", str(out / "restart.nc"), "--out", str(out),
               "--overwrite"],
       f"--out {out} contains an input of this run (--initial")]:
    code, err = _run(again, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _snapshot(out) == before

  code, err = _run(first + ["--overwrite"], capsys)
  assert code == 0, err
  assert set(_snapshot(out)) == set(before)


def test_training_output_inside_the_data_or_finished_needs_care(
    tiny_run, tmp_path, capsys):
  data = Path(tiny_run["D"])
  splits = _snapshot(data)
  code, err = _run(["train-ardm", "--data", str(data), "--out",
                    str(data / "train.nc")] + TINY_CLI, capsys)
  assert code == 2 and "lies inside the input folder --data" in err, err
  assert _snapshot(data) == splits and not (data / "train.work").exists()

  # A finished run (its checkpoint written) is refused; --overwrite resumes
  # its work folder (nothing left to train) and writes the checkpoint again.
  shutil.copy(tiny_run["A"], tmp_path / "a.npz")
  shutil.copytree(Path(tiny_run["A"]).with_suffix(".work"),
                  tmp_path / "a.work")
  argv = ["train-ardm", "--data", str(data), "--out",
          str(tmp_path / "a.npz")] + TINY_CLI
  code, err = _run(argv, capsys)
  assert code == 2 and "exists already" in err and "--overwrite" in err, err
  code, err = _run(argv + ["--overwrite"], capsys)
  assert code == 0, err


def test_check_output_rules(tmp_path):
  folder = tmp_path / "results"
  folder.mkdir()
  (folder / "notes.txt").write_text("mine")
  check_output(folder, "folder", writes=("analysis.nc", "*.png"))  # unrelated
  (folder / "old.png").write_bytes(b"png")
  with pytest.raises(OutputExistsError, match="already holds old.png"):
    check_output(folder, "folder", writes=("analysis.nc", "*.png"))
  check_output(folder, "folder", writes=("*.png",), overwrite=True)
  data = tmp_path / "data"
  data.mkdir()
  (data / "train.nc").write_bytes(b"")
  for path, kind, message in [
      (data, "folder", "is also an input of this run (--data"),
      (tmp_path, "folder", "contains an input of this run (--data"),
      (data / "sub" / "model.npz", "file", "lies inside the input folder"),
      (data / "train.nc", "file", "lies inside the input folder")]:
    with pytest.raises(OutputPathError, match=message.replace("(", r"\(")):
      check_output(path, kind, inputs=[("--data", data)], overwrite=True)
  # An output folder inside an input folder writes nothing of the input's;
  # names that are no paths (a shipped model, gs://) are not inputs here.
  check_output(data / "results", "folder", inputs=[("--data", data)])
  check_output(tmp_path / "out", "folder", inputs=[("--ardm", "ks"),
                                                   ("--stats", "gs://b/s")])


def test_a_locked_work_folder_names_the_other_run(tiny_run, tmp_path, capsys,
                                                  holder):
  work = tmp_path / "work"
  proc = holder(work)
  code, err = _run(["train-ardm", "--data", tiny_run["D"], "--out",
                    str(tmp_path / "a.npz"), "--workdir", str(work)]
                   + TINY_CLI, capsys)
  assert code == 2, err
  assert f"{work} is in use by another run (pid {proc.pid} on" in err, err
  assert "holder of the test" in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "a.npz").exists()
  # The training loop takes the lock itself (the library, without the CLI).
  import jax
  import jax.numpy as jnp
  import optax
  from gencast_control.training import training_loop
  with pytest.raises(workdir_lock.FolderInUseError, match=f"pid {proc.pid}"):
    training_loop.train(lambda p, k: (jnp.sum(p["w"] ** 2), {}),
                        {"w": jnp.ones(2)}, optax.sgd(0.1), 1,
                        jax.random.PRNGKey(0), workdir=work, progress=False)
  # A killed holder leaves no stale lock.
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  with workdir_lock.locked(work):
    pass


def test_results_folder_is_locked_while_a_command_writes_it(tmp_path, capsys,
                                                            holder):
  out = tmp_path / "res"
  proc = holder(out)
  code, err = _run(["simulate", "--out", str(out)] + TINY_CLI, capsys)
  assert code == 2 and f"(pid {proc.pid} on" in err, err
  assert not list(out.glob("*.nc"))


def test_the_lock_is_released_on_errors_and_interrupts(tmp_path):
  work = tmp_path / "w"
  for error in (ValueError, KeyboardInterrupt):
    with pytest.raises(error):
      with workdir_lock.locked(work):
        assert (work / workdir_lock.LOCK_NAME).exists()
        raise error("stop")
    assert not work.exists()  # made by locked, nothing written: removed
    other = subprocess.run([sys.executable, "-c", HOLD_LOCK.replace(
        "time.sleep(120)", "pass"), str(work)], capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
  # Within one process the lock is reentrant (the CLI, then the training
  # loop); the folder stays locked until the outer block ends.
  (work / "state.npz").parent.mkdir(parents=True)
  with workdir_lock.locked(work):
    with workdir_lock.locked(work):
      pass
    busy = subprocess.run([sys.executable, "-c", HOLD_LOCK, str(work)],
                          capture_output=True, text=True)
    assert busy.returncode == 1 and f"pid {os.getpid()}" in busy.stderr
  assert work.exists()  # it existed before: kept


def test_figure_writes_are_atomic(tmp_path, monkeypatch):
  import matplotlib.figure
  from gencast_control.evaluation import plots
  path = tmp_path / "rmse.png"
  plots.plot_error_vs_time({"a": np.array([1.0, 0.5, 0.25])}, path)
  good = path.read_bytes()
  assert good.startswith(b"\x89PNG")
  original = matplotlib.figure.Figure.savefig

  def broken(self, fname, *args, **kwargs):
    fname.write(b"\x89PNG half an image")
    raise OSError("disk full")
  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
  for target in (path, tmp_path / "new.png"):
    with pytest.raises(OSError, match="disk full"):
      plots.plot_error_vs_time({"a": np.array([1.0, 0.5])}, target)
  assert path.read_bytes() == good  # the previous figure is intact
  assert sorted(p.name for p in tmp_path.iterdir()) == ["rmse.png"]
  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", original)
  import matplotlib.pyplot as plt
  assert not plt.get_fignums()  # closed also on failure
