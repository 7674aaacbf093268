"""A background-thread prefetcher for indexed, deterministic data streams.

Item i of the stream is `produce(i)`; a daemon thread computes items
start, start+1, ... ahead of the consumer into a bounded queue, so loading
(e.g. zarr reads, which release the GIL) overlaps with training. An exception
in `produce` is re-raised in the consumer at the item where it happened;
`close()` stops the thread promptly even when the queue is full.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

_POLL_S = 0.05


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


def _put(item, out: queue.Queue, stop: threading.Event) -> bool:
  while not stop.is_set():
    try:
      out.put(item, timeout=_POLL_S)
      return True
    except queue.Full:
      continue
  return False


def _work(produce: Callable[[int], object], index: int, end: int | None,
          out: queue.Queue, stop: threading.Event) -> None:
  """Producer loop: puts produce(index), produce(index + 1), ... into out."""
  while not stop.is_set() and (end is None or index < end):
    try:
      item = produce(index)
    except BaseException as e:  # pylint: disable=broad-except
      _put(_Failure(e), out, stop)
      return
    if not _put(item, out, stop):
      return
    index += 1
  _put(StopIteration(), out, stop)


class Prefetcher(Generic[T]):
  """Iterator over produce(start), produce(start + 1), ... computed ahead.

  Args:
    produce: item factory; must be deterministic in its index for resumable
      streams.
    start: first index.
    buffer_size: at most this many items wait in the queue (>= 1).
    stop: optional end index (exclusive); None streams forever.
  """

  def __init__(self, produce: Callable[[int], T], start: int = 0,
               buffer_size: int = 2, stop: int | None = None):
    if buffer_size < 1:
      raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
    self._queue: queue.Queue = queue.Queue(maxsize=buffer_size)
    self._stop = threading.Event()
    self._finished = False
    # The worker holds no reference to self, so an abandoned prefetcher is
    # garbage collected and __del__ stops its thread.
    self._thread = threading.Thread(
        target=_work, args=(produce, start, stop, self._queue, self._stop),
        name="Prefetcher", daemon=True)
    self._thread.start()

  def __iter__(self) -> "Prefetcher[T]":
    return self

  def __next__(self) -> T:
    if self._finished:
      raise StopIteration
    while True:
      if self._stop.is_set():
        raise RuntimeError("the prefetcher is closed")
      try:
        item = self._queue.get(timeout=_POLL_S)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          raise RuntimeError("the prefetch thread ended unexpectedly") from None
    if isinstance(item, StopIteration):
      self._finished = True
      raise StopIteration
    if isinstance(item, _Failure):
      self._finished = True
      self.close()
      raise item.error
    return item

  @property
  def alive(self) -> bool:
    """Whether the background thread is still running."""
    return self._thread.is_alive()

  def close(self, timeout_s: float = 5.0) -> None:
    """Stops the background thread and drops queued items."""
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    if threading.current_thread() is not self._thread:
      self._thread.join(timeout_s)

  def __enter__(self) -> "Prefetcher[T]":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    stop = getattr(self, "_stop", None)
    if stop is not None:
      stop.set()
