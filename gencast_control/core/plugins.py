"""Models of one's own: "module:factory" or "path/to/file.py:factory".

factory() returns a FrozenARDM; the public API (`gc.load_model`) and every
command that takes `--ardm` load it this way, with no change to this package.
"""

from __future__ import annotations

from pathlib import Path

from gencast_control.core.ardm import FrozenARDM


def is_plugin_spec(source) -> bool:
  """Whether `source` names a factory ("module:factory", "file.py:factory")
  rather than a file."""
  if not isinstance(source, str) or ":" not in source or Path(source).exists():
    return False
  module, _, factory = source.rpartition(":")
  return bool(module) and factory.isidentifier()


def plugin_model(spec: str) -> FrozenARDM:
  """The FrozenARDM returned by factory() of "module:factory" or
  "path/to/file.py:factory" (a model of your own, no change to this
  package)."""
  import importlib
  import importlib.util
  module_name, _, factory_name = spec.rpartition(":")
  try:
    if module_name.endswith(".py"):
      if not Path(module_name).is_file():
        raise ValueError(f"model file {module_name} does not exist")
      loader = importlib.util.spec_from_file_location(
          Path(module_name).stem, module_name)
      module = importlib.util.module_from_spec(loader)
      loader.loader.exec_module(module)
    else:
      module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"cannot import the model module {module_name!r}: {e}"
                     ) from e
  factory = getattr(module, factory_name, None)
  if not callable(factory):
    raise ValueError(f"{module_name!r} has no callable {factory_name!r}")
  model = factory()
  if not isinstance(model, FrozenARDM):
    raise ValueError(f"{spec}() returned a {type(model).__name__}, not a"
                     " FrozenARDM")
  return model
