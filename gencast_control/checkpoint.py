"""Self-describing, atomically written checkpoints (.npz).

A checkpoint is an uncompressed-or-compressed NumPy .npz archive holding

* ``params/<module>/<name>``: the arrays of a haiku parameter tree, and
* ``__metadata__``: a JSON document (format version, kind, config, provenance).

Training states (parameters + optimiser state + step + PRNG key) are stored as
their flattened leaves ``leaf/<i>`` and restored against a template pytree, so
resuming a run checks every shape. Writes go to a temporary file in the target
directory followed by ``os.replace``, so an interrupted write never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
_META = "__metadata__"


class CheckpointError(ValueError):
  """A checkpoint is missing, corrupt, or not the expected kind."""


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
  """Calls write_fn(file_object) on a temp file, then renames it to `path`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write_fn(f)
      f.flush()
      os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def _save(path, arrays: dict[str, np.ndarray], metadata: dict) -> Path:
  meta = dict(metadata, format_version=FORMAT_VERSION)
  arrays = dict(arrays)
  arrays[_META] = np.frombuffer(json.dumps(meta, default=str).encode(),
                                dtype=np.uint8)
  return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def _load(path, expected_kind: str | None):
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"checkpoint {path} does not exist")
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise CheckpointError(
        f"checkpoint {path} is corrupt or not a .npz archive ({e})") from e
  if _META not in arrays:
    raise CheckpointError(
        f"{path} is not a gencast-control checkpoint (no {_META} entry)")
  try:
    meta = json.loads(arrays.pop(_META).tobytes().decode())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f"checkpoint {path} has corrupt metadata") from e
  if meta.get("format_version") != FORMAT_VERSION:
    raise CheckpointError(
        f"checkpoint {path} has format version {meta.get('format_version')},"
        f" this library reads version {FORMAT_VERSION}")
  if expected_kind is not None and meta.get("kind") != expected_kind:
    raise CheckpointError(
        f"checkpoint {path} holds a {meta.get('kind')!r}, expected"
        f" {expected_kind!r}")
  return arrays, meta


def save_checkpoint(path, params, metadata: dict[str, Any]) -> Path:
  """Saves a haiku parameter tree ({module: {name: array}}) with metadata.

  metadata must contain a "kind" (e.g. "grid_ardm", "controller").
  """
  if "kind" not in metadata:
    raise ValueError("checkpoint metadata needs a 'kind'")
  arrays = {f"params/{module}/{name}": np.asarray(value)
            for module, leaves in params.items()
            for name, value in leaves.items()}
  return _save(path, arrays, metadata)


def load_checkpoint(path, expected_kind: str | None = None):
  """Loads (params, metadata) saved by save_checkpoint."""
  arrays, meta = _load(path, expected_kind)
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, value in arrays.items():
    parts = key.split("/")
    if parts[0] != "params" or len(parts) < 3:
      raise CheckpointError(f"checkpoint {path} has unexpected entry {key!r}")
    module, name = "/".join(parts[1:-1]), parts[-1]
    params.setdefault(module, {})[name] = value
  return params, meta


def save_training_state(path, state, metadata: dict[str, Any]) -> Path:
  """Saves any pytree of arrays (e.g. params, opt_state, step, key)."""
  leaves = jax.tree.leaves(state)
  arrays = {f"leaf/{i}": np.asarray(jax.device_get(leaf))
            for i, leaf in enumerate(leaves)}
  return _save(path, arrays, dict(metadata, kind="training_state",
                                  num_leaves=len(leaves)))


def load_training_state(path, template):
  """Restores a pytree saved by save_training_state into `template`'s shape."""
  arrays, meta = _load(path, "training_state")
  leaves, treedef = jax.tree.flatten(template)
  if meta.get("num_leaves") != len(leaves):
    raise CheckpointError(
        f"training state {path} has {meta.get('num_leaves')} arrays, the"
        f" current run expects {len(leaves)}: was it written by another"
        " configuration?")
  restored = []
  for i, leaf in enumerate(leaves):
    value = arrays[f"leaf/{i}"]
    if np.shape(leaf) != value.shape:
      raise CheckpointError(
          f"training state {path}: array {i} has shape {value.shape}, the"
          f" current run expects {np.shape(leaf)}")
    restored.append(value.astype(np.asarray(leaf).dtype))
  return jax.tree.unflatten(treedef, restored), meta
