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


def options_from_kwargs(cls, options: dict[str, Any], what: str):
  """cls(**options), with a one-line error naming the unknown options of
  `what` (e.g. "method 'dps'") and the valid ones."""
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(options) - names)
  if unknown:
    raise ValueError(f"unknown options {unknown} for {what};"
                     f" valid: {sorted(names)}")
  return cls(**options)


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


def check_type(hint, value, path: str) -> None:
  """Raises ValueError unless `value` fits the type annotation `hint`.

  Booleans are not ints, floats are not ints (num_steps=5.5 is an error, not
  5), ints are floats, lists are not tuples once coerced.
  """
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if hint is Any or isinstance(hint, typing.TypeVar):
    return
  if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
    errors = []
    for arg in args:
      try:
        return check_type(arg, value, path)
      except ValueError as e:
        errors.append(e)
    raise errors[0]
  if hint is type(None):
    ok = value is None
  elif hint is bool:
    ok = isinstance(value, bool)
  elif hint is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif hint is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif hint is str:
    ok = isinstance(value, str)
  elif origin is tuple:
    ok = isinstance(value, tuple)
    if ok and len(args) == 2 and args[1] is Ellipsis:
      for i, v in enumerate(value):
        check_type(args[0], v, f"{path}[{i}]")
    elif ok and args:
      ok = len(args) == len(value)
      for i, (a, v) in enumerate(zip(args, value) if ok else ()):
        check_type(a, v, f"{path}[{i}]")
  elif origin is dict:
    ok = isinstance(value, dict)
  elif dataclasses.is_dataclass(hint):
    ok = isinstance(value, hint)
  else:
    return  # an annotation this checker does not know: trust the dataclass
  if not ok:
    raise ValueError(f"{path} must be {_type_name(hint)}, got {value!r}")


def _type_name(hint) -> str:
  names = {int: "an integer", float: "a number", str: "a string",
           bool: "True or False", type(None): "None"}
  if hint in names:
    return names[hint]
  if typing.get_origin(hint) is tuple:
    return "a tuple such as (1, 2)"
  return getattr(hint, "__name__", str(hint))


def require(config, positive: Sequence[str] = (),
            nonnegative: Sequence[str] = ()) -> None:
  """Range checks for a config's __post_init__: one-line ValueErrors."""
  name = type(config).__name__
  for field in positive:
    value = getattr(config, field)
    if not value > 0:
      raise ValueError(f"{name}.{field} must be > 0, got {value!r}")
  for field in nonnegative:
    value = getattr(config, field)
    if not value >= 0:
      raise ValueError(f"{name}.{field} must be >= 0, got {value!r}")


def differences(ours, theirs, prefix: str) -> list[tuple[str, Any, Any]]:
  """(dotted field, our value, their value) where two configs differ."""
  if not (dataclasses.is_dataclass(ours) and type(ours) is type(theirs)):
    return [] if ours == theirs else [(prefix, ours, theirs)]
  out = []
  for field in dataclasses.fields(ours):
    out += differences(getattr(ours, field.name), getattr(theirs, field.name),
                       f"{prefix}.{field.name}")
  return out


def _parse(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    pass
  try:
    return float(text)  # inf, -inf, nan
  except ValueError:
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
    check_type(hints[name], value, f"--set {sub[1]}")
    changes[name] = value
  try:
    return dataclasses.replace(obj, **changes)
  except TypeError as e:  # e.g. a custom __post_init__ comparing types
    raise ValueError(f"cannot set {sorted(changes)} of"
                     f" {type(obj).__name__}: {e}") from e


def load_config(name_or_path: str, overrides: Sequence[str] = ()):
  """Loads get_config() from configs/NAME.py (a path) or a built-in name."""
  path = Path(name_or_path)
  if path.suffix == ".py":
    if not path.is_file():
      raise ValueError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
      spec.loader.exec_module(module)
    except SyntaxError as e:
      raise ValueError(f"config file {path}, line {e.lineno}: SyntaxError:"
                       f" {e.msg}") from e
    except Exception as e:  # an import or any error at the module's top level
      raise ValueError(f"config file {path} failed to load:"
                       f" {type(e).__name__}: {e}") from e
  else:
    try:
      module = importlib.import_module(f"gencast_control.configs.{name_or_path}")
    except ModuleNotFoundError as e:
      raise ValueError(f"unknown config {name_or_path!r}: give a path to a .py"
                       " file or a module name under configs/") from e
  if not hasattr(module, "get_config"):
    raise ValueError(f"config {name_or_path} defines no get_config()")
  try:
    config = module.get_config()
  except ValueError as e:
    raise ValueError(f"config {name_or_path}: get_config() failed: {e}") from e
  except Exception as e:
    raise ValueError(f"config {name_or_path}: get_config() failed:"
                     f" {type(e).__name__}: {e}") from e
  if not dataclasses.is_dataclass(config) or isinstance(config, type):
    raise ValueError(f"config {name_or_path}: get_config() returned a"
                     f" {type(config).__name__}, not a config dataclass"
                     " (e.g. an ExperimentConfig)")
  return apply_overrides(config, overrides)
