"""Data-parallel controller training over 4 and 8 forced CPU devices.

XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before jax is
imported, so the multi-device checks run in one subprocess
(tests/sharding_worker.py) whose JSON results these tests inspect.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from gencast_control import sharding
from gencast_control.controller_training import ControllerTrainingConfig

WORKER = Path(__file__).with_name("sharding_worker.py")


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sharding")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run(
      [sys.executable, str(WORKER), str(workdir), "indivisible", "grads",
       "resume"], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = {}
  for line in proc.stdout.splitlines():
    if line.startswith("{"):
      results.update(json.loads(line))
  assert results["devices"] == 8
  return results


def test_loss_and_gradients_match_one_device(worker):
  r = worker["grads"]
  for n in (4, 8):
    assert r[f"grad_devices_{n}"] == n
    assert r[f"all_reduce_{n}"], "the batch was not split across devices"
    assert r[f"loss_{n}"] == pytest.approx(r["loss_1"], rel=1e-5)
    assert r[f"grad_max_abs_diff_{n}"] <= 1e-5 * r["grad_max_abs"]


def test_sharded_resume_matches_uninterrupted_training(worker):
  r = worker["resume"]
  assert r["restored_step"] == 2
  assert r["restored_replicated"] and r["restored_devices"] == 8
  assert r["resumed_steps"] == [3, 4]
  assert r["params_devices"] == 8
  assert r["params_moved"] > 1e-3  # training changed the parameters
  assert r["params_max_abs_diff"] <= 1e-6


def test_indivisible_batch_is_a_clear_error(worker):
  r = worker["indivisible"]
  assert "batch_size 6 is not divisible by the 4" in r["6_on_4"]
  assert "batch_size 12 is not divisible by the 8" in r["12_on_8"]


def test_mesh_and_config_validation():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("batch", "sample")
  assert mesh.size == jax.device_count()
  with pytest.raises(ValueError, match="devices"):
    sharding.make_mesh(jax.device_count() + 1)
  with pytest.raises(ValueError, match="sample axis"):
    sharding.make_mesh(1, sample=2)
  assert ControllerTrainingConfig().mesh() is None
  assert ControllerTrainingConfig(shard_batch=True).mesh().size == \
      jax.device_count()


def test_initialize_distributed_single_process(monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS",
               "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("SLURM_NTASKS", "1")  # a one-task job: nothing to join
  assert sharding.initialize_distributed() == 1
  with pytest.raises(ValueError, match="coordinator_address"):
    sharding.initialize_distributed(num_processes=2, process_id=0)
  with pytest.raises(ValueError, match="process_id 3"):
    sharding.initialize_distributed("localhost:1234", 2, 3)


def test_initialize_distributed_after_jax_started_is_a_clear_error():
  jax.devices()  # the backend is up: too late to join a cluster
  with pytest.raises(RuntimeError, match="before any JAX"):
    sharding.initialize_distributed("localhost:12355", 1, 0)
