"""A training process killed mid-run resumes to the uninterrupted result."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from gencast_control.adapters.grid import load_grid_ardm
from tests.conftest import TINY_CLI

ARGS = TINY_CLI + ["--set", "ardm_training.num_steps=200",
               "--set", "ardm_training.checkpoint_every=10",
               "--set", "ardm_training.log_every=10"]


def _train_ardm(data, out, workdir):
  return [sys.executable, "-m", "gencast_control.cli", "train-ardm",
          "--data", str(data), "--out", str(out), "--workdir", str(workdir)
          ] + ARGS


def test_killed_training_resumes_to_the_same_parameters(tmp_path):
  from gencast_control import cli
  data = tmp_path / "data"
  assert cli.main(["simulate", "--out", str(data)] + TINY_CLI) == 0
  env = dict(os.environ, JAX_PLATFORMS="cpu")

  subprocess.run(_train_ardm(data, tmp_path / "full.npz", tmp_path / "w1"),
                 check=True, env=env, capture_output=True)

  work = tmp_path / "w2"
  proc = subprocess.Popen(_train_ardm(data, tmp_path / "resumed.npz", work),
                          env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (work / "state.npz").exists() and proc.poll() is None:
    assert time.time() < deadline, "no checkpoint written"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "resumed.npz").exists(), "run finished before kill"
  log_lines = (work / "log.jsonl").read_text().splitlines()
  assert len(log_lines) < 200 // 10

  subprocess.run(_train_ardm(data, tmp_path / "resumed.npz", work),
                 check=True, env=env, capture_output=True)
  full, _ = load_grid_ardm(tmp_path / "full.npz")
  resumed, _ = load_grid_ardm(tmp_path / "resumed.npz")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               full.params, resumed.params)
