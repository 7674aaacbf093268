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


def to_strict_json(obj, indent: int | None = 2) -> str:
  """JSON text that every parser reads: NaN and +-inf become null."""
  def clean(x):
    if isinstance(x, dict):
      return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
      return clean(x.tolist())
    if isinstance(x, float) and not np.isfinite(x):
      return None
    if isinstance(x, (str, int, float, bool)) or x is None:
      return x
    return str(x)
  return json.dumps(clean(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj) -> Path:
  """Atomically writes `obj` as strict JSON (see to_strict_json)."""
  text = to_strict_json(obj)
  return atomic_write(path, lambda f: f.write(text.encode()))


class OutputPathError(ValueError):
  """An output location cannot be written."""


class OutputExistsError(OutputPathError):
  """An output exists already and replacing it was not asked for."""


def _inputs(inputs) -> list[tuple[str, Path]]:
  """[(flag, path)] of the existing inputs; items are paths or (flag, path)."""
  out = []
  for item in inputs:
    flag, other = item if isinstance(item, tuple) else ("", item)
    if other is None or not isinstance(other, (str, os.PathLike)):
      continue
    other = Path(other)
    if other.exists():  # a name (shipped model, gs://) is no path here
      out.append((flag, other))
  return out


def check_output(path: str | os.PathLike, kind: str = "file",
                 inputs: tuple = (), flag: str = "--out",
                 writes: tuple[str, ...] | None = None,
                 overwrite: bool = False,
                 overwrite_hint: str = "--overwrite") -> Path:
  """Fails before any work if `path` cannot be written as a `kind`.

  kind: "file" or "folder".
  inputs: what the run reads: paths, or (flag, path) pairs (the flag names
    it in the error). No output may be an input, an output folder may not
    contain one, and an output file may not lie inside an input folder
    (a checkpoint among the training splits). Inputs that do not exist
    (names of shipped models, URLs) are skipped.
  writes: for a folder, the names (or glob patterns) of the files the run
    writes there; unless `overwrite`, a folder holding any of them is
    refused (files of other names are left alone). For a file: an existing
    file is refused unless `overwrite`.
  overwrite_hint: how the caller asks to replace outputs (in the message).

  Raises OutputPathError (OutputExistsError for existing outputs).
  """
  path = Path(path)
  if kind == "file" and path.is_dir():
    raise OutputPathError(f"{flag} {path} is a folder; give a file path,"
                          f" e.g. {path / 'model.npz'}")
  if kind == "folder" and path.exists() and not path.is_dir():
    raise OutputPathError(f"{flag} {path} is a file; give a folder")
  out = path.resolve()
  for input_flag, other in _inputs(inputs):
    named = f"{input_flag} {other}".strip()
    resolved = other.resolve()
    if resolved == out:
      raise OutputPathError(f"{flag} {path} is also an input of this run"
                            f" ({named}); choose another path")
    if kind == "folder" and resolved.is_relative_to(out):
      raise OutputPathError(f"{flag} {path} contains an input of this run"
                            f" ({named}); write the results to another"
                            " folder")
    if kind == "file" and other.is_dir() and out.is_relative_to(resolved):
      raise OutputPathError(f"{flag} {path} lies inside the input folder"
                            f" {named}; write it outside that folder")
  if not overwrite:
    if kind == "file" and path.exists():
      raise OutputExistsError(
          f"{flag} {path} exists already (finished work is not replaced);"
          f" give another path, or {overwrite_hint} to replace it")
    if kind == "folder" and path.is_dir():
      for name in writes or ():
        found = sorted(path.glob(name)) if any(c in name for c in "*?[") \
            else [path / name] if os.path.lexists(path / name) else []
        if found:
          raise OutputExistsError(
              f"{flag} {path} already holds {found[0].name} of an earlier"
              f" run; give another folder, or {overwrite_hint} to replace"
              " it")
  existing = path if kind == "folder" else path.parent
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise OutputPathError(f"{flag} {path}: {existing} is a file, not a folder")
  try:
    tempfile.TemporaryFile(dir=existing).close()
  except OSError as e:
    raise OutputPathError(f"{flag} {path}: cannot write in {existing}"
                          f" ({e.strerror or e})") from e
  return path


def _save(path, arrays: dict[str, np.ndarray], metadata: dict) -> Path:
  meta = dict(metadata, format_version=FORMAT_VERSION)
  arrays = dict(arrays)
  arrays[_META] = np.frombuffer(json.dumps(meta, default=str).encode(),
                                dtype=np.uint8)
  return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def _load(path, expected_kind: str | None):
  path = Path(path)
  if path.is_dir():
    raise CheckpointError(f"checkpoint {path} is a folder; give the .npz file")
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
  bad = _non_finite(arrays)
  if bad:
    raise CheckpointError(f"refusing to write {path}: parameter {bad} has"
                          " NaN or inf values")
  return _save(path, arrays, metadata)


def _non_finite(arrays: dict[str, np.ndarray]) -> str | None:
  """The name of the first floating-point array with NaN or inf, if any."""
  for name, value in arrays.items():
    if value.dtype.kind in "fc" and not np.isfinite(value).all():
      return name.removeprefix("params/")
  return None


def check_params(path, params, template) -> None:
  """Raises CheckpointError unless params has template's names and shapes."""
  def flat(tree):
    return {f"{m}/{n}": tuple(v.shape) for m, leaves in tree.items()
            for n, v in leaves.items()}
  got, want = flat(params), flat(template)
  missing = sorted(set(want) - set(got))
  if missing:
    raise CheckpointError(f"checkpoint {path} lacks parameter {missing[0]}"
                          f" ({len(missing)} missing) of its architecture")
  extra = sorted(set(got) - set(want))
  if extra:
    raise CheckpointError(f"checkpoint {path} has parameter {extra[0]}, which"
                          " its architecture does not have")
  for name, shape in want.items():
    if got[name] != shape:
      raise CheckpointError(
          f"checkpoint {path}: parameter {name} has shape {got[name]}, its"
          f" architecture needs {shape}")


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
  bad = _non_finite(arrays)
  if bad:
    raise CheckpointError(f"checkpoint {path}: parameter {bad} has NaN or inf"
                          " values (a diverged training run?)")
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
