"""Bad input and faults: every case ends in one line and exit code 2.

CASES is the table of docs/bad_input.md ("Bad input and faults"):
`python -m tests.test_bad_input` prints it, and `test_docs_table_is_current`
fails when the page's copy differs. Each case runs `gencast-control` in
process on tiny files written here and checks the one-line error. FAULTS are
the fault-tolerance behaviours tested elsewhere, named by their tests.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CLI as TINY

PAGE = Path(__file__).parents[1] / "docs" / "bad_input.md"
TABLE_START = "<!-- bad-input table: python -m tests.test_bad_input -->"
TABLE_END = "<!-- end of bad-input table -->"

@dataclasses.dataclass(frozen=True)
class Case:
  """A bad input: `gencast-control ARGS` must fail with `message`.

  ARGS may name the files of conftest's `tiny_run` fixture: {D} tiny KS
  splits, {A} and {B} two tiny ARDMs, {C} a controller trained against {A}
  (work folder {C}.work), {K} the shipped Kolmogorov ARDM; {T} is a temp
  folder;
  `prepare(paths)` writes more files first.
  """
  input: str
  args: str
  message: str
  tiny: bool = True
  prepare: str = ""


CASES = [
    # -- results that were lost or mislabelled
    Case("train-controller again, against another ARDM",
         "train-controller --data {D} --ardm {B} --out {C} --overwrite",
         "belongs to another run (other frozen ARDM)"),
    Case("train-ardm rerun with another learning rate",
         "train-ardm --data {D} --out {A} --overwrite"
         " --set ardm_training.learning_rate=1e-5",
         "belongs to another run (other learning rate)"),
    Case("train-ardm rerun with another seed",
         "train-ardm --data {D} --out {A} --overwrite"
         " --set ardm_training.seed=7",
         "belongs to another run (other config)"),
    Case("train-controller rerun on other training data",
         "train-controller --data {T}/other_data --ardm {A} --out {C}"
         " --overwrite",
         "belongs to another run (other training data)", prepare="other_data"),
    Case("train-ardm whose learning rate makes it diverge (1e10)",
         "train-ardm --data {D} --out {T}/nan.npz"
         " --set ardm_training.num_steps=3 --set ardm_training.learning_rate=1e10",
         "diverged at step"),
    Case("a resumed state beyond the new num_steps",
         "train-ardm --data {D} --out {A} --overwrite"
         " --set ardm_training.num_steps=1",
         "beyond num_steps=1"),
    Case("train-controller --out the --ardm checkpoint",
         "train-controller --data {D} --ardm {A} --out {A}",
         "is also an input of this run"),
    Case("a controller checkpoint full of NaN",
         "demo --ardm {A} --controller {T}/nan_controller.npz --out {T}/r",
         "has NaN or inf values", prepare="nan_controller"),
    Case("demo overrides of the checkpoint's sampler",
         "demo --set ardm.sampler.method=euler --set ardm.sampler.num_steps=30"
         " --out {T}/r", "sets ardm.sampler.method='euler' but", tiny=False),
    Case("demo override of the controller's horizon",
         "demo --set controller.horizon=5 --out {T}/r",
         "the checkpoint fixes the `controller` section", tiny=False),
    Case("evaluate with a test split shorter than assimilation.num_steps",
         "evaluate --data {D} --ardm {A} --controller {C} --out {T}/r"
         " --set assimilation.num_steps=40", "holds 25 times but"),
    Case("ardm_training.num_steps=-5",
         "train-ardm --data {D} --out {T}/x.npz"
         " --set ardm_training.num_steps=-5", "num_steps must be > 0"),
    # -- configs and overrides
    Case("a config file with a SyntaxError",
         "demo --config {T}/syntax.py", "line 1: SyntaxError", tiny=False,
         prepare="configs"),
    Case("a config file whose import fails",
         "demo --config {T}/imports.py", "ModuleNotFoundError", tiny=False,
         prepare="configs"),
    Case("get_config() returning a dict",
         "demo --config {T}/returns_dict.py", "not a config dataclass",
         tiny=False, prepare="configs"),
    Case("a config file without get_config()",
         "demo --config {T}/empty.py", "defines no get_config()", tiny=False,
         prepare="configs"),
    Case("a config file that does not exist",
         "demo --config {T}/missing.py", "does not exist", tiny=False),
    Case("an unknown config name", "demo --config nope", "unknown config",
         tiny=False),
    Case("--set controller_training.num_steps=abc",
         "demo --set controller_training.num_steps=abc",
         "must be an integer, got 'abc'", tiny=False),
    Case("--set controller_training.num_steps=5.5",
         "demo --set controller_training.num_steps=5.5",
         "must be an integer, got 5.5", tiny=False),
    Case("--set ardm_training.learning_rate=fast",
         "demo --set ardm_training.learning_rate=fast",
         "must be a number, got 'fast'", tiny=False),
    Case("--set assimilation.regime=(1,2)",
         "demo --set assimilation.regime=(1,2)", "must be a string", tiny=False),
    Case("--set assimilation.ensemble_size=2.5",
         "demo --set assimilation.ensemble_size=2.5",
         "must be an integer, got 2.5", tiny=False),
    Case("--set with an unknown field", "demo --set ardm.nope=1",
         "unknown config field 'nope'", tiny=False),
    Case("--set without =", "demo --set ardm", "field.path=value", tiny=False),
    Case("--set of a whole section", "demo --set ardm=3", "config section",
         tiny=False),
    Case("--set ardm_training.checkpoint_every=0",
         "train-ardm --data {D} --out {T}/x.npz"
         " --set ardm_training.checkpoint_every=0", "checkpoint_every must be"),
    Case("--set controller_training.batch_size=0",
         "demo --set controller_training.batch_size=0",
         "batch_size must be > 0, got 0", tiny=False),
    Case("--set ardm_training.batch_size=-1",
         "demo --set ardm_training.batch_size=-1",
         "batch_size must be > 0, got -1", tiny=False),
    Case("--set ardm.network.width=-4", "demo --set ardm.network.width=-4",
         "width must be > 0", tiny=False),
    Case("--set ardm.history_length=0", "demo --set ardm.history_length=0",
         "history_length must be > 0", tiny=False),
    Case("an unknown regime", "evaluate --regime nope --out {T}/r",
         "unknown observation regime 'nope'", tiny=False),
    # -- output locations, checked before any work
    Case("--out in a location that cannot be written",
         "simulate --out /proc/gencast_control_test", "cannot write in",
         tiny=False),
    Case("demo --out an existing file", "demo --out {A}", "is a file",
         tiny=False),
    Case("train-ardm --out an existing folder",
         "train-ardm --data {D} --out {T}", "is a folder"),
    Case("--workdir on a file",
         "train-ardm --data {D} --out {T}/x.npz --workdir {A}",
         "--workdir {A} is a file"),
    # -- checkpoints
    Case("Kolmogorov checkpoints with --config ks",
         "evaluate --ardm {K} --out {T}/r", "for system 'kolmogorov'",
         tiny=False),
    Case("a controller for another ARDM",
         "evaluate --data {D} --ardm {B} --controller {C} --out {T}/r",
         "was trained for ARDM"),
    Case("a controller that lacks a parameter",
         "evaluate --data {D} --ardm {A} --controller {T}/missing_param.npz"
         " --out {T}/r", "lacks parameter", prepare="broken_controllers"),
    Case("a controller with a mis-shaped parameter",
         "evaluate --data {D} --ardm {A} --controller {T}/bad_shape.npz"
         " --out {T}/r", "has shape", prepare="broken_controllers"),
    Case("a folder given as a checkpoint",
         "evaluate --data {D} --ardm {T} --out {T}/r", "is a folder"),
    Case("a checkpoint that does not exist",
         "evaluate --data {D} --ardm {T}/none.npz --out {T}/r",
         "does not exist"),
    Case("a corrupt checkpoint (random bytes)",
         "evaluate --data {D} --ardm {T}/garbage.npz --out {T}/r",
         "corrupt or not a .npz archive", prepare="garbage"),
    Case("demo --ardm without --controller", "demo --ardm {A} --out {T}/r",
         "give both --ardm and --controller"),
    # -- data
    Case("a --data folder without splits",
         "train-ardm --data {T}/empty --out {T}/x.npz", "no train.nc",
         prepare="empty_dir"),
    Case("training data with NaN",
         "train-ardm --data {T}/nan_data --out {T}/x.npz", "NaN",
         prepare="nan_data"),
    Case("float64 data beyond float32's range",
         "train-ardm --data {T}/huge_data --out {T}/x.npz",
         "beyond float32's range", prepare="huge_data"),
    Case("data of another grid than the config's",
         "train-ardm --data {D} --out {T}/x.npz", "expects (128, 1)",
         tiny=False),
    # -- cluster and stores
    Case("--distributed without a cluster",
         "train-controller --data {D} --ardm {A} --out {T}/x.npz --distributed",
         "jax.distributed.initialize failed"),
    Case("data probe of an https:// store",
         "data probe https://example.com/era5.zarr",
         "https:// stores are not supported", tiny=False),
    Case("data probe of an s3:// store", "data probe s3://bucket/era5.zarr",
         "s3:// stores are not supported", tiny=False),
    # -- finished work: never overwritten, never mixed with a running run
    Case("assimilate again into a folder holding an earlier run's results",
         "assimilate --ardm {A} --controller {C} --observations {T}/obs.nc"
         " --initial {T}/initial.nc --out {T}/run",
         "already holds analysis.nc of an earlier run; give another folder,"
         " or --overwrite to replace it", prepare="earlier_run"),
    Case("cycling with --restart DIR --out DIR",
         "assimilate --ardm {A} --controller {C} --observations {T}/obs.nc"
         " --restart {T}/run --out {T}/run --overwrite",
         "is also an input of this run (--restart {T}/run)",
         prepare="earlier_run"),
    Case("--out a folder that holds an input",
         "assimilate --ardm {A} --controller {C} --observations"
         " {T}/run/obs.nc --initial {T}/initial.nc --out {T}/run --overwrite",
         "contains an input of this run (--observations {T}/run/obs.nc)",
         prepare="earlier_run"),
    Case("train-ardm --out inside the --data folder",
         "train-ardm --data {D} --out {D}/train.nc",
         "lies inside the input folder --data {D}"),
    Case("train-ardm --out the checkpoint of a finished run",
         "train-ardm --data {D} --out {A}",
         "exists already (finished work is not replaced)"),
    Case("simulate into a folder holding splits", "simulate --out {D}",
         "already holds train.nc of an earlier run"),
    Case("a work folder in use by another run",
         "train-ardm --data {D} --out {T}/x.npz --workdir {T}/busy",
         "{T}/busy is in use by another run (pid", prepare="busy"),
]

# Fault tolerance tested elsewhere: (situation, what happens, test).
FAULTS = [
    ("SIGKILL during training, then rerun",
     "resumes to the uninterrupted result bit for bit",
     "test_resume.py::test_killed_training_resumes_to_the_same_parameters"),
    ("a diverged run rerun with a saner learning rate",
     "continues from the last good state; the checkpoint records the event",
     "test_bad_input.py::test_divergence_then_a_saner_rerun_continues"),
    ("a non-finite gradient or parameter with a finite loss",
     "the update is not applied; nothing non-finite reaches disk",
     "test_checkpoint.py::test_non_finite_parameters_with_a_finite_loss_are_"
     "not_applied"),
    ("temporary files left by a killed write", "removed at the next start",
     "test_checkpoint.py::test_stale_temporary_files_of_killed_writes_are_"
     "removed"),
    ("log.jsonl after a resume", "each step logged once",
     "test_checkpoint.py::test_interrupted_training_resumes_to_the_same_result"),
    ("a run from scratch with --fresh",
     "deletes the work folder's state, then trains",
     "test_bad_input.py::test_fresh_starts_afresh"),
    ("a failed checkpoint write", "the previous file stays intact",
     "test_checkpoint.py::test_failed_write_leaves_previous_file_intact"),
    ("NaN scores", "written as null: metrics.json and co. are strict JSON",
     "test_bad_input.py::test_json_outputs_are_strict"),
    ("a second `assimilate` into the same --out",
     "refused; the first run's files stay byte-identical; --overwrite"
     " replaces them",
     "test_outputs.py::test_a_second_assimilate_refuses_and_keeps_the_first_"
     "run"),
    ("a run holding a work folder is killed",
     "no stale lock: the kernel drops the flock, the next run takes it",
     "test_outputs.py::test_a_locked_work_folder_names_the_other_run"),
    ("an error or Ctrl-C inside a locked folder",
     "the lock is released (and a folder made only for it removed)",
     "test_outputs.py::test_the_lock_is_released_on_errors_and_interrupts"),
    ("a figure write that fails midway",
     "no partial image; the previous figure stays intact",
     "test_outputs.py::test_figure_writes_are_atomic"),
]

_BACKGROUND = []  # processes started by _prepare, ended after each case


def _run(argv: list[str], capsys) -> tuple[int, str]:
  from gencast_control import cli
  capsys.readouterr()
  code = cli.main(argv)
  return code, capsys.readouterr().err


def _prepare(name: str, paths: dict[str, str]) -> None:
  import xarray as xr
  from gencast_control.core import checkpoint
  t = Path(paths["T"])
  if name == "configs":
    (t / "syntax.py").write_text("def get_config(:\n")
    (t / "imports.py").write_text("import no_such_module\n")
    (t / "returns_dict.py").write_text("def get_config():\n  return {}\n")
    (t / "empty.py").write_text("x = 1\n")
  elif name == "nan_controller":
    params, meta = checkpoint.load_checkpoint(paths["C"])
    arrays = {f"params/{m}/{n}": np.full_like(v, np.nan)
              for m, leaves in params.items() for n, v in leaves.items()}
    checkpoint._save(t / "nan_controller.npz", arrays, meta)
  elif name == "broken_controllers":
    params, meta = checkpoint.load_checkpoint(paths["C"])
    module = sorted(params)[0]
    leaf = sorted(params[module])[0]
    missing = {m: dict(v) for m, v in params.items()}
    del missing[module][leaf]
    checkpoint.save_checkpoint(t / "missing_param.npz", missing, meta)
    bad = {m: dict(v) for m, v in params.items()}
    bad[module][leaf] = np.zeros(bad[module][leaf].shape + (2,))
    checkpoint.save_checkpoint(t / "bad_shape.npz", bad, meta)
  elif name == "garbage":
    (t / "garbage.npz").write_bytes(np.random.default_rng(0).bytes(256))
  elif name == "earlier_run":  # a finished assimilate run in {T}/run
    (t / "run").mkdir(exist_ok=True)
    test = xr.open_dataset(Path(paths["D"]) / "test.nc").load()
    for path in (t / "run" / "analysis.nc", t / "run" / "restart.nc",
                 t / "run" / "obs.nc", t / "obs.nc", t / "initial.nc"):
      test.to_netcdf(path)
  elif name == "busy":  # another process holds {T}/busy's lock
    import subprocess
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from gencast_control.core import workdir_lock\n"
         "with workdir_lock.locked(sys.argv[1]):\n"
         "  print('locked', flush=True)\n  time.sleep(120)\n",
         str(t / "busy")], stdout=subprocess.PIPE, text=True)
    _BACKGROUND.append(proc)
    assert proc.stdout.readline().strip() == "locked"
  elif name == "empty_dir":
    (t / "empty").mkdir(exist_ok=True)
  elif name in ("nan_data", "huge_data", "other_data"):
    out = t / name
    out.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
      ds = xr.open_dataset(Path(paths["D"]) / f"{split}.nc").load()
      u = ds["u"].values.astype(np.float64)
      if name == "nan_data":
        u[0, 3, 5] = np.nan
      elif name == "huge_data":
        u[0, 3, 5] = 1e40
      else:
        u = u[:, ::-1].copy()  # the same files, time reversed
      ds["u"] = (ds["u"].dims, u)
      ds.to_netcdf(out / f"{split}.nc")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.input)
def test_bad_input_is_one_line_and_exit_code_2(case, tiny_run, tmp_path,
                                              capsys):
  paths = dict(tiny_run, T=str(tmp_path))
  try:
    if case.prepare:
      _prepare(case.prepare, paths)
    argv = [a.format(**paths) for a in case.args.split()]
    # The case's own --set come last, so they win over TINY's.
    code, err = _run(argv[:1] + (TINY if case.tiny else []) + argv[1:],
                     capsys)
  finally:
    while _BACKGROUND:
      proc = _BACKGROUND.pop()
      proc.kill()
      proc.wait()
  lines = [l for l in err.splitlines() if "error:" in l or "Traceback" in l]
  assert code == 2, err
  assert len(lines) == 1 and "Traceback" not in err, err
  assert case.message.format(**paths) in lines[0], lines[0]


def test_nothing_diverged_or_mismatched_reaches_disk(tiny_run, tmp_path, capsys):
  out = tmp_path / "nan.npz"
  code, _ = _run(["train-ardm", "--data", tiny_run["D"], "--out", str(out)]
                 + TINY + ["--set", "ardm_training.num_steps=3",
                           "--set", "ardm_training.learning_rate=1e10"], capsys)
  assert code == 2 and not out.exists()
  before = Path(tiny_run["C"]).read_bytes()
  code, _ = _run(["train-controller", "--data", tiny_run["D"], "--ardm",
                  tiny_run["B"], "--out", tiny_run["C"], "--overwrite"]
                 + TINY, capsys)
  assert code == 2 and Path(tiny_run["C"]).read_bytes() == before


def test_divergence_then_a_saner_rerun_continues(tiny_run, tmp_path, capsys):
  from gencast_control.adapters.grid import load_grid_ardm
  out = tmp_path / "a.npz"
  argv = ["train-ardm", "--data", tiny_run["D"], "--out", str(out)] + TINY + [
      "--set", "ardm_training.num_steps=6"]
  code, err = _run(argv + ["--set", "ardm_training.learning_rate=1e10"], capsys)
  assert code == 2 and "last good state" in err
  code, err = _run(argv + ["--set", "ardm_training.learning_rate=1e-3"],
                   capsys)
  assert code == 0, err
  ardm, meta = load_grid_ardm(out)
  assert all(np.isfinite(v).all() for leaves in ardm.params.values()
             for v in leaves.values())
  assert "resumed after divergence" in meta["training_events"][0]["event"]


def test_fresh_starts_afresh(tiny_run, tmp_path, capsys):
  out = tmp_path / "a.npz"
  argv = ["train-ardm", "--data", tiny_run["D"], "--out", str(out)] + TINY
  assert _run(argv, capsys)[0] == 0
  assert "exists already" in _run(argv, capsys)[1]  # a finished run
  other = argv + ["--overwrite", "--set", "ardm_training.seed=5"]
  assert "belongs to another run" in _run(other, capsys)[1]
  assert _run(other + ["--fresh"], capsys)[0] == 0


def test_json_outputs_are_strict(tmp_path):
  import json
  from gencast_control.core.checkpoint import write_json
  path = write_json(tmp_path / "m.json", {"rmse": float("nan"),
                                          "x": [np.float32(np.inf), 1.5]})
  assert json.loads(path.read_text(), parse_constant=pytest.fail) == {
      "rmse": None, "x": [None, 1.5]}


def markdown_table() -> str:
  rows = ["| # | input | what happens |", "|---|---|---|"]
  for i, case in enumerate(CASES, 1):
    rows.append(f"| {i} | {case.input} (`gencast-control"
                f" {case.args.split()[0]}`) | exit 2, one line: ...{case.message}"
                "... |")
  for j, (situation, outcome, test) in enumerate(FAULTS, len(CASES) + 1):
    rows.append(f"| {j} | {situation} | {outcome} (`{test.split('::')[1]}`)"
                " |")
  return "\n".join(rows).replace("{", "").replace("}", "")


def test_docs_table_is_current():
  text = PAGE.read_text()
  assert TABLE_START in text and TABLE_END in text, f"{PAGE} lacks the table"
  table = text.split(TABLE_START)[1].split(TABLE_END)[0].strip()
  assert table == markdown_table(), (
      "docs/bad_input.md's bad-input table is stale: paste `python -m"
      " tests.test_bad_input` between its markers")


def test_fault_rows_name_existing_tests():
  for _, _, test in FAULTS:
    module, name = test.split("::")
    assert f"def {name}(" in (Path(__file__).parent / module).read_text(), test


if __name__ == "__main__":
  sys.stdout.write(markdown_table() + "\n")
