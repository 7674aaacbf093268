"""Training examples streamed from a store: read on demand, prefetched, sharded.

A training run draws, for step i, `batch_size` example times from its
batch key (`training_loop.train` passes fold_in(key, i)); the stream reads
those examples from the store (a zarr store opened lazily, so only the frames
asked for are read) when asked, and `prefetch(key)` starts reading the next
step's batch on a background thread while the current step runs. Nothing is
held in memory but the batches in flight.

With several processes (hosts) each one reads only its own shard of the
example times, times[process_index::process_count], and draws its local
batch (batch_size / process_count examples) from it: the hosts together read
a global batch of batch_size distinct examples and no host reads another's.
The draw depends only on (key, process index), so a resumed run reads the
same examples as an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable

import jax
import numpy as np


class ExampleStream:
  """`stream(key)` -> the batch of the step whose batch key is `key`.

  Args:
    read: read(times) -> the batch of the examples at these times (e.g.
      GenCast's (inputs, targets, forcings) from era5_batches.
      to_gencast_batch), as host arrays.
    times: the example times (e.g. initialisation times) of the whole run.
    batch_size: the global batch size (a multiple of process_count).
    process_index, process_count: this host's shard (default: JAX's).
    prefetch: batches read ahead on the background thread (0: none).
  """

  def __init__(self, read: Callable[[np.ndarray], Any], times,
               batch_size: int, process_index: int | None = None,
               process_count: int | None = None, prefetch: int = 2):
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
    if count < 1 or not 0 <= index < count:
      raise ValueError(f"process_index {index} is not in [0, {count})")
    if batch_size < 1 or batch_size % count:
      raise ValueError(f"batch_size {batch_size} must be a positive multiple"
                       f" of the process count {count}")
    times = np.asarray(times)
    self.shard = times[index::count]
    if self.shard.size == 0:
      raise ValueError(f"process {index} of {count} has no examples: the run"
                       f" has {times.size} example times")
    self.read = read
    self.local_batch = batch_size // count
    self.process_index = index
    self.prefetch_depth = prefetch
    self._pending: dict[bytes, concurrent.futures.Future] = {}
    self._pool = (concurrent.futures.ThreadPoolExecutor(1, "example-stream")
                  if prefetch > 0 else None)

  def times_for(self, key: jax.Array) -> np.ndarray:
    """This host's example times of the step whose batch key is `key`."""
    seed = np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist()
    rng = np.random.default_rng(seed + [self.process_index])
    replace = self.local_batch > self.shard.size
    return self.shard[np.sort(rng.choice(self.shard.size, self.local_batch,
                                         replace=replace))]

  @staticmethod
  def _id(key: jax.Array) -> bytes:
    return np.asarray(jax.random.key_data(key)).tobytes()

  def prefetch(self, key: jax.Array) -> None:
    """Starts reading the batch of `key` in the background."""
    if self._pool is None or self._id(key) in self._pending:
      return
    while len(self._pending) >= self.prefetch_depth:  # drop the oldest
      self._pending.pop(next(iter(self._pending))).cancel()
    self._pending[self._id(key)] = self._pool.submit(self.read,
                                                     self.times_for(key))

  def __call__(self, key: jax.Array):
    future = self._pending.pop(self._id(key), None)
    if future is not None:
      return future.result()
    return self.read(self.times_for(key))

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=False, cancel_futures=True)
