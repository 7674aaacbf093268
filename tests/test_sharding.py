"""Data-parallel controller training over 8 forced CPU devices.

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
import numpy as np
import pytest

from gencast_control.training import sharding
from gencast_control.training.controller_training import ControllerTrainingConfig

WORKER = Path(__file__).with_name("sharding_worker.py")


def _run_worker(workdir, *checks):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(filter(
      None, [os.environ.get("XLA_FLAGS", ""),
             "--xla_force_host_platform_device_count=8"])))
  proc = subprocess.run([sys.executable, str(WORKER), str(workdir), *checks],
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = {}
  for line in proc.stdout.splitlines():
    if line.startswith("{"):
      results.update(json.loads(line))
  assert results["devices"] == 8
  return results


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  return _run_worker(tmp_path_factory.mktemp("sharding"), "indivisible",
                     "grads", "resume")


def test_loss_and_gradients_match_one_device(worker):
  r = worker["grads"]
  for n in (8,):
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
  # A (batch 4, sample 2) mesh: ensembles [K, M, ...] split K over batch and
  # M over sample; a training batch is split over all 8 devices.
  assert r["mesh_shape"] == {"batch": 4, "sample": 2}
  assert "not divisible by the 8 batch shards" in r["4_on_4x2"]


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


@pytest.mark.gencast
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GENCAST_CONTROL_SLOW_TESTS"),
                    reason="about 7 min of CPU (two GenCast gradient"
                    " compilations): set GENCAST_CONTROL_SLOW_TESTS=1")
def test_gencast_sharded_training_and_job(tmp_path):
  pytest.importorskip(
      "gencast_control.adapters.gencast.predictor",
      reason="DeepMind's GenCast code is not installed (pip install"
      " 'gencast-control[gencast]' or '[gencast-next]')",
      exc_type=ImportError)
  r = _run_worker(tmp_path, "gencast", "gencast_job")
  g = r["gencast"]
  assert g["params_devices"] == 2
  np.testing.assert_allclose(g["loss_1"], g["loss_0"], rtol=1e-5)
  assert g["params_max_abs_diff"] <= 1e-5
  j = r["gencast_job"]
  assert j == {"rc": 0, "controller": True, "state": True, "steps": [1, 2],
               "seconds": j["seconds"]}


def test_gencast_job_draws_valid_initialisation_times():
  from gencast_control.adapters.gencast.job import draw_init_times
  times = np.arange(np.datetime64("2015-12-31T00"), np.datetime64("2018-01-01"),
                    np.timedelta64(6, "h"))
  inits = draw_init_times(times, (2016, 2017), 50, window=2, seed=0)
  assert len(set(inits.tolist())) == 50 and np.all(np.diff(inits) > 0)
  hours = (inits - inits.astype("datetime64[D]")).astype("timedelta64[h]")
  assert set(hours.astype(int).tolist()) <= {0, 12}
  assert inits.min() >= np.datetime64("2016-01-01")
  # t0 + 2 x 12 h must exist: the store's last time is 2017-12-31T18.
  assert inits.max() <= np.datetime64("2017-12-30T18")
  again = draw_init_times(times, (2016, 2017), 50, window=2, seed=0)
  np.testing.assert_array_equal(inits, again)
  with pytest.raises(ValueError, match="usable initialisation times"):
    draw_init_times(times[:20], (2016, 2017), 50, window=1, seed=0)
