"""Data-parallel training over many devices with jax.sharding.

One Mesh over the devices with two named axes:

    batch   examples of a training batch are split over it (data parallel);
    sample  ensemble members (size 1 unless asked for); a training batch is
            split over batch x sample together, so every device holds
            B / (num_batch * num_sample) examples.

Parameters, optimiser state, step and PRNG key are replicated (PartitionSpec()),
the leading (example) axis of a batch is sharded. XLA's SPMD partitioner
(GSPMD) turns the mean over the batch into a cross-device all-reduce, so the
loss and gradients are those of one device up to the summation order. No pmap:
the jitted step sees global arrays (jax.Array with a NamedSharding).

Multi-host: `initialize_distributed()` wraps jax.distributed.initialize, after
which jax.devices() lists the devices of every process and the same mesh spans
them. Replicated arrays are built with jax.make_array_from_callback from the
host value, which every process must hold identically (same data files, same
seed); each process writes checkpoints only if it is process 0.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH = "batch"
SAMPLE = "sample"
AXES = (BATCH, SAMPLE)

# Environment variables by which a launcher announces a multi-process job that
# jax.distributed.initialize() detects by itself (its own cluster detection:
# explicit JAX_* variables, SLURM, Open MPI / mpirun, Cloud TPU pod slices).
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS",
                "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "TPU_WORKER_HOSTNAMES")


def _multi_process_env() -> str | None:
  """The first cluster variable that announces more than one process."""
  for name in _CLUSTER_ENV:
    value = os.environ.get(name, "")
    if name == "JAX_COORDINATOR_ADDRESS" and value:
      return name
    if name == "TPU_WORKER_HOSTNAMES" and "," in value:
      return name
    if value.isdigit() and int(value) > 1:
      return name
  return None


class ClusterError(RuntimeError):
  """jax.distributed could not join a multi-process job."""


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           force: bool = False) -> int:
  """Joins a multi-process (multi-host) JAX job; a no-op for one process.

  Calls jax.distributed.initialize when arguments are given, when `force` is
  set (e.g. on a Cloud TPU pod slice, where JAX detects the workers from the
  VM metadata), or when the environment announces several processes
  (JAX_COORDINATOR_ADDRESS [+ JAX_NUM_PROCESSES, JAX_PROCESS_ID], SLURM,
  mpirun, TPU_WORKER_HOSTNAMES); otherwise it does nothing. Must run before
  any JAX computation in the process.

  Returns:
    The number of processes (jax.process_count()).
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit) and coordinator_address is None \
      and not os.environ.get("JAX_COORDINATOR_ADDRESS"):
    raise ValueError("initialize_distributed: num_processes/process_id need a"
                     " coordinator_address (host:port of process 0)")
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes must be >= 1, got {num_processes}")
  if (process_id is not None and num_processes is not None
      and not 0 <= process_id < num_processes):
    raise ValueError(f"process_id {process_id} is outside 0..{num_processes - 1}")
  if jax.distributed.is_initialized():
    return jax.process_count()
  announced = _multi_process_env()
  if not (force or announced or any(v is not None for v in explicit)):
    return 1
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  except (RuntimeError, ValueError) as e:
    where = f" (detected from ${announced})" if announced else ""
    raise ClusterError(
        f"jax.distributed.initialize failed{where}: {str(e).rstrip('.')}."
        " Call"
        " initialize_distributed() before any JAX computation; without a"
        " cluster launcher set JAX_COORDINATOR_ADDRESS=host:port,"
        " JAX_NUM_PROCESSES and JAX_PROCESS_ID on every process.") from e
  return jax.process_count()


def make_mesh(num_devices: int = 0, sample: int = 1,
              devices: Sequence[Any] | None = None) -> Mesh:
  """Mesh of shape (num_devices / sample, sample), axes ("batch", "sample").

  Args:
    num_devices: how many of the devices to use (0: all, across processes).
    sample: size of the ensemble-member axis.
    devices: explicit device list (default jax.devices()).
  """
  devices = list(jax.devices() if devices is None else devices)
  num_devices = num_devices or len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"asked for {num_devices} devices, {len(devices)} are"
                     f" available ({devices[0].platform})")
  if sample < 1 or num_devices % sample:
    raise ValueError(f"the sample axis ({sample}) must divide the number of"
                     f" devices ({num_devices})")
  grid = np.asarray(devices[:num_devices], dtype=object).reshape(
      num_devices // sample, sample)
  return Mesh(grid, AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of parameters and optimiser state: a full copy per device."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis split over batch x sample, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(AXES))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """ValueError unless the mesh's batch x sample shards divide batch_size."""
  shards = mesh.size
  if batch_size % shards:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by the {shards} batch"
        f" shards of the device mesh {dict(mesh.shape)}; use a multiple of"
        f" {shards} or fewer devices")


def training_mesh(shard_batch: bool, num_devices: int,
                  batch_size: int) -> Mesh | None:
  """The mesh of a training run (None unless shard_batch), batch size checked."""
  if not shard_batch:
    return None
  mesh = make_mesh(num_devices)
  check_batch_size(batch_size, mesh)
  return mesh


def _place(tree, sharding: NamedSharding):
  """Places every leaf of a host pytree with `sharding` (each process
  supplies its own devices' parts: jax.make_array_from_callback)."""

  def put(leaf):
    value = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(value.shape, sharding,
                                        lambda index: value[index])

  return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh):
  """Places every leaf of a host pytree on all devices of the mesh.

  Works when the mesh spans several processes (each supplies its own
  devices' copies).
  """
  return _place(tree, replicated(mesh))


def shard_batch(tree, mesh: Mesh):
  """Places a host batch with its leading (example) axis split over the mesh,
  so each device receives only its examples. Every process passes the same
  global batch."""
  return _place(tree, batch_sharding(mesh))


def shard_local_batch(tree, mesh: Mesh):
  """Places a host batch of which each process holds only its own part
  (e.g. its examples of a data.example_stream.ExampleStream): the global
  batch is the processes' parts together, split over the mesh as by
  shard_batch (jax.make_array_from_process_local_data). With one process
  this is shard_batch."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda leaf: jax.make_array_from_process_local_data(
      sharding, np.asarray(jax.device_get(leaf))), tree)


def constrain_batch(tree, mesh: Mesh):
  """Inside jit: shard the leading axis of every leaf over the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def is_primary() -> bool:
  """True in the process that writes checkpoints and logs (process 0)."""
  return jax.process_index() == 0
