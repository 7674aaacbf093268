"""Shared fixtures: a tiny KS ARDM trained in seconds, used by several tests."""

import fcntl
import json
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# JAX's persistent compilation cache: many tests compile the same programs
# (tiny models, rollouts, notebooks' kernels and CLI subprocesses inherit it),
# so each is compiled once per machine. Set JAX_COMPILATION_CACHE_DIR= (empty)
# to switch it off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"gencast-control-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The suite's tiny programs take far longer to compile than to run: XLA:CPU's
# LLVM back end at -O0 compiles them 2-3x faster (a Held-Suarez controller
# training step 8.5 s -> 2.9 s; the whole pilot path 65 s -> 31 s). The
# kernels of convolutions and matrix products are precompiled, so their
# speed does not change. Set GENCAST_CONTROL_TEST_XLA_OPT=1 to test with
# the default optimisation.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
if not os.environ.get("GENCAST_CONTROL_TEST_XLA_OPT"):
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [
      os.environ.get("XLA_FLAGS", ""), FAST_COMPILE_FLAG]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gencast_control.adapters.grid import GridARDMConfig  # noqa: E402
from gencast_control.adapters.grid_training import (ARDMTrainingConfig,  # noqa: E402
                                                    train_ardm)
from gencast_control.core.networks import ConvNetConfig  # noqa: E402
from gencast_control.systems.ks import KSConfig, generate_ks_dataset  # noqa: E402
from gencast_control.core.samplers import SamplerConfig  # noqa: E402

TINY_KS = KSConfig(num_points=32, domain_length=22.0, solver_dt=0.25,
                   model_dt=1.0)
TINY_ARDM = GridARDMConfig(
    state_shape=(32, 1), periodic=(True,), history_length=1,
    network=ConvNetConfig(width=16, num_blocks=2, kernel_size=5,
                          dilations=(1, 2), embedding_size=16),
    sampler=SamplerConfig(method="dpmpp_2s", num_steps=4, sigma_max=10.0))


@pytest.fixture(scope="session")
def tiny_ks_data() -> np.ndarray:
  """[16, 41, 32, 1] KS trajectories on a small domain."""
  ds = generate_ks_dataset(jax.random.PRNGKey(0), 16, 40, TINY_KS,
                           burn_in_steps=100)
  return ds["u"].values[..., None]


@pytest.fixture(scope="session")
def tiny_ardm(tiny_ks_data):
  ardm, _ = train_ardm(tiny_ks_data, TINY_ARDM,
                       ARDMTrainingConfig(num_steps=300, batch_size=16,
                                          learning_rate=3e-3),
                       progress=False)
  return ardm


# A tiny KS run through the CLI (seconds per step on 2 cores).
TINY_CLI = ("--set pde.num_points=32 --set pde.domain_length=22.0"
    " --set ardm.state_shape=(32,1) --set ardm.network.width=8"
    " --set ardm.network.num_blocks=1 --set ardm.sampler.method=euler"
    " --set ardm.sampler.num_steps=2"
    " --set controller.network.width=8 --set controller.network.num_blocks=1"
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


def _build_tiny_run(root):
  from gencast_control import cli
  from gencast_control.systems import pipeline
  from gencast_control.adapters.grid import (GridARDM, load_grid_ardm,
                                             save_grid_ardm)
  paths = {"D": str(root / "data"), "A": str(root / "a.npz"),
           "B": str(root / "b.npz"), "C": str(root / "c.npz"),
           "K": str(pipeline.shipped_checkpoints("kolmogorov")[0])}
  steps = [["simulate", "--out", paths["D"]],
           ["train-ardm", "--data", paths["D"], "--out", paths["A"]],
           ["train-controller", "--data", paths["D"], "--ardm", paths["A"],
            "--out", paths["C"]]]
  for argv in steps:
    assert cli.main(argv + TINY_CLI) == 0, argv
  a, meta = load_grid_ardm(paths["A"])  # B: A's architecture, other weights
  b_params = {m: {n: v * 1.01 for n, v in leaves.items()}
              for m, leaves in a.params.items()}
  save_grid_ardm(paths["B"], GridARDM(a.config, b_params, a.normalization),
                 {"system": meta["system"]})
  return paths


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id):
  """Tiny KS splits (D), two ARDMs (A, B) and a controller trained against A
  (C) by the CLI; K: the shipped Kolmogorov ARDM. Built once per pytest run:
  pytest-xdist workers share it (the first builds it under a file lock, the
  others read it; pytest-xdist's documented pattern)."""
  if worker_id == "master":
    return _build_tiny_run(tmp_path_factory.mktemp("tiny_run"))
  root = tmp_path_factory.getbasetemp().parent / "tiny_run"
  with open(str(root) + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    done = root / "paths.json"
    if not done.exists():
      root.mkdir(exist_ok=True)
      done.write_text(json.dumps(_build_tiny_run(root)))
    return json.loads(done.read_text())


# The test files that take longest on 2 cores (pytest --durations, 2026-12-02),
# longest first. pytest-xdist (--dist loadfile) hands out files in collection
# order, so starting with these keeps one slow file from running alone at the
# end while the other worker idles.
SLOW_FILES = ("test_held_suarez.py", "test_sharding.py", "test_cli.py",
              "test_control.py", "test_notebooks.py", "test_bad_input.py",
              "test_era5_pilot.py", "test_benchmark.py",
              "test_assimilate_files.py", "test_shipped_checkpoints.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


@pytest.fixture(scope="session")
def benchmark_script():
  """load(name) -> the module of benchmarks/NAME.py (scripts, not a package)."""
  import importlib.util
  import pathlib
  root = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"

  def load(name):
    spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

  return load
