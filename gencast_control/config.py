"""Experiment configs: frozen dataclasses, dotted overrides, dict round trips.

A config file is a Python module with ``get_config()`` returning a frozen
dataclass (see configs/). ``--set a.b.c=value`` overrides a field; the value is
parsed as a Python literal (falling back to a string) and checked against the
field's current type. Configs are stored in checkpoints as dicts and rebuilt
with ``from_dict``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import typing
from pathlib import Path
from typing import Any, Sequence


def to_dict(config) -> dict[str, Any]:
  return dataclasses.asdict(config)


def from_dict(cls, data: dict[str, Any]):
  """Rebuilds a (nested) frozen dataclass from `to_dict`'s output."""
  if not isinstance(data, dict):
    raise ValueError(f"expected a dict for {cls.__name__}, got {type(data)}")
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = set(data) - names
  if unknown:
    raise ValueError(f"unknown fields {sorted(unknown)} for {cls.__name__}")
  kwargs = {}
  for name, value in data.items():
    kwargs[name] = _coerce(hints[name], value)
  return cls(**kwargs)


def _coerce(hint, value):
  origin = typing.get_origin(hint)
  args = typing.get_args(hint)
  if dataclasses.is_dataclass(hint) and isinstance(value, dict):
    return from_dict(hint, value)
  if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
    if value is None:
      return None
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _coerce(arg, value)
      except (TypeError, ValueError):
        continue
    return value
  if origin is tuple and isinstance(value, (list, tuple)):
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(args[0], v) for v in value)
    if args and len(args) == len(value):
      return tuple(_coerce(a, v) for a, v in zip(args, value))
    return tuple(value)
  if origin is dict and isinstance(value, dict):
    return {k: _coerce(args[1], v) if args else v for k, v in value.items()}
  if hint is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def _parse(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config, overrides: Sequence[str]):
  """Applies ["a.b=1", "c='x'"] to a frozen dataclass, returning a new one.

  All overrides of one section are applied in a single replace, so fields
  validated together (e.g. a grid and its coarsening) can change together.
  """
  tree: dict = {}
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like field.path=value")
    path, text = item.split("=", 1)
    parts = path.strip().split(".")
    node = tree
    for part in parts[:-1]:
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        raise ValueError(f"override {item!r} conflicts with another override")
    node[parts[-1]] = (_parse(text), path.strip())
  return _replace_tree(config, tree, "")


def _replace_tree(obj, tree: dict, prefix: str):
  if not dataclasses.is_dataclass(obj):
    raise ValueError(f"cannot set {prefix!r}: {type(obj).__name__} is not"
                     " a config")
  names = [f.name for f in dataclasses.fields(obj)]
  hints = typing.get_type_hints(type(obj))
  changes = {}
  for name, sub in tree.items():
    full_path = f"{prefix}{name}"
    if name not in names:
      raise ValueError(f"unknown config field {name!r} in {full_path!r};"
                       f" {type(obj).__name__} has {names}")
    current = getattr(obj, name)
    if isinstance(sub, dict):
      changes[name] = _replace_tree(current, sub, f"{full_path}.")
      continue
    value = _coerce(hints[name], sub[0])
    if dataclasses.is_dataclass(current) and not dataclasses.is_dataclass(
        value):
      raise ValueError(f"{full_path!r} is a config section; set its fields")
    changes[name] = value
  return dataclasses.replace(obj, **changes)


def load_config(name_or_path: str, overrides: Sequence[str] = ()):
  """Loads get_config() from configs/NAME.py (a path) or a built-in name."""
  path = Path(name_or_path)
  if path.suffix == ".py":
    if not path.is_file():
      raise ValueError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  else:
    try:
      module = importlib.import_module(f"gencast_control.configs.{name_or_path}")
    except ModuleNotFoundError as e:
      raise ValueError(f"unknown config {name_or_path!r}: give a path to a .py"
                       " file or a module name under configs/") from e
  if not hasattr(module, "get_config"):
    raise ValueError(f"config {name_or_path} defines no get_config()")
  return apply_overrides(module.get_config(), overrides)
