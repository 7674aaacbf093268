"""An exclusive lock on a folder, held by the run that writes into it.

`locked(folder)` takes an advisory `fcntl.flock` on `folder/.lock`, a file
holding the owner's pid, host, start time and command line; a second run
that asks for the same folder gets a FolderInUseError naming that process.
The lock is released when the `with` block ends, also on an exception or
KeyboardInterrupt; the lock file is then deleted, and so is the folder if
`locked` created it and nothing else was written there. A killed run leaves
no stale lock: the kernel drops a flock with the process that held it (its
`.lock` file may stay, and the next run takes it over). flock works across
the processes of one machine and, on Linux NFS clients, across machines.

The lock is reentrant within a process (training_loop.train takes it again
inside a command that already holds it), and the lock file is not inherited
by programs started with exec (Python opens it close-on-exec).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

LOCK_NAME = ".lock"

_held: dict[str, int] = {}  # resolved folder -> depth, in this process
_guard = threading.Lock()


class FolderInUseError(OSError):
  """Another run holds the folder's lock."""


def _owner_text(fd: int) -> str:
  """The holder of the lock open at fd, in words."""
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    owner = json.loads(os.read(fd, 65536).decode() or "{}")
  except (OSError, ValueError):
    owner = {}
  if not owner:
    return "another process (it has not written its name yet)"
  return (f"pid {owner.get('pid')} on {owner.get('host')}, started"
          f" {owner.get('started')}: {owner.get('command')}")


def _acquire(folder: Path) -> int:
  """Opens and flocks folder/LOCK_NAME; the fd, or FolderInUseError."""
  path = folder / LOCK_NAME
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      who = _owner_text(fd)
      os.close(fd)
      raise FolderInUseError(
          f"{folder} is in use by another run ({who}); wait for it to end or"
          f" choose another folder (lock file {path})") from None
    try:  # the file may have been deleted by a holder that just released it
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return fd
    os.close(fd)


@contextlib.contextmanager
def locked(folder: str | os.PathLike, command: str | None = None):
  """Holds the lock on `folder` (created if missing) for the `with` block.

  command: the owner's description in the lock file (default: this
  process's command line).
  """
  folder = Path(folder)
  created = []  # folders made here, deepest last
  missing = folder
  while not missing.exists():
    created.insert(0, missing)
    missing = missing.parent
  folder.mkdir(parents=True, exist_ok=True)
  key = str(folder.resolve())
  with _guard:
    depth = _held.get(key, 0)
    if depth:
      _held[key] = depth + 1
  if depth:  # this process holds it already
    try:
      yield folder
    finally:
      with _guard:
        _held[key] -= 1
    return
  fd = _acquire(folder)
  try:
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
             "command": command or shlex.join([Path(sys.argv[0]).name]
                                              + sys.argv[1:])}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    with _guard:
      _held[key] = 1
    yield folder
  finally:
    with _guard:
      _held.pop(key, None)
    with contextlib.suppress(OSError):
      os.unlink(folder / LOCK_NAME)  # before unlocking: see _acquire
    os.close(fd)  # releases the flock
    for made in reversed(created):  # only if nothing was written there
      with contextlib.suppress(OSError):
        made.rmdir()
