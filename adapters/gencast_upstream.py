"""The one place that imports DeepMind's GenCast code (graphcast 0.2 / weathernext).

DeepMind's package is NOT the PyPI project named ``graphcast`` (an unrelated
graph-database tool). Install it from its repository, pinned to the 0.2 commit:

    pip install "gencast-control[gencast]"
    # or directly:
    pip install "graphcast @ git+https://github.com/google-deepmind/graphcast@08cf73625c9d12bd9aaa038868bcb2fe488f2a22"

Two import layouts are recognised: ``graphcast.<module>`` (version 0.2, tested)
and the later ``weathernext`` layout (``weathernext.weathernext1_gen.<module>``,
``weathernext.utils.<module>`` and the top-level ``xarray_jax`` package), which
is resolved by name only and is untested.
"""

from __future__ import annotations

import dataclasses
import importlib
import types

INSTALL_HINT = (
    "DeepMind's GenCast code is not installed. Install the optional extra with"
    " `pip install 'gencast-control[gencast]'` or directly with `pip install"
    " 'graphcast @ git+https://github.com/google-deepmind/graphcast@"
    "08cf73625c9d12bd9aaa038868bcb2fe488f2a22'` (needs jax<0.8.2 and"
    " xarray<2026.4). Do NOT `pip install graphcast` from PyPI: that name"
    " belongs to an unrelated project.")

# Each layout: our name -> the dotted path of DeepMind's module. `task` holds
# TaskConfig, `variables` the variable lists (ALL_ATMOSPHERIC_VARS).
_GRAPHCAST = {m: f"graphcast.{m}" for m in (
    "casting", "checkpoint", "data_utils", "denoiser", "gencast",
    "model_utils", "nan_cleaning", "normalization", "rollout",
    "samplers_utils", "xarray_jax", "xarray_tree")}
_GRAPHCAST.update(task="graphcast.graphcast", variables="graphcast.graphcast")

_WEATHERNEXT = {
    "casting": "weathernext.utils.casting",
    "checkpoint": "weathernext.utils.checkpoint",
    "data_utils": "weathernext.utils.data_utils",
    "denoiser": "weathernext.weathernext1_gen.denoiser",
    "gencast": "weathernext.weathernext1_gen.gencast",
    "model_utils": "weathernext.utils.model_utils",
    "nan_cleaning": "weathernext.utils.nan_cleaning",
    "normalization": "weathernext.utils.normalization",
    "rollout": "weathernext.utils.rollout",
    "samplers_utils": "weathernext.weathernext1_gen.samplers_utils",
    "task": "weathernext.utils.task",
    "variables": "weathernext.utils.variables",
    "xarray_jax": "xarray_jax",
    "xarray_tree": "weathernext.utils.xarray_tree",
}


class GenCastNotInstalledError(ImportError):
  """DeepMind's graphcast/weathernext package cannot be imported."""


@dataclasses.dataclass(frozen=True)
class Upstream:
  """DeepMind's modules, whichever layout is installed."""
  layout: str
  casting: types.ModuleType
  checkpoint: types.ModuleType
  data_utils: types.ModuleType
  denoiser: types.ModuleType
  gencast: types.ModuleType
  model_utils: types.ModuleType
  nan_cleaning: types.ModuleType
  normalization: types.ModuleType
  rollout: types.ModuleType
  samplers_utils: types.ModuleType
  task: types.ModuleType
  variables: types.ModuleType
  xarray_jax: types.ModuleType
  xarray_tree: types.ModuleType


_CACHE: list[Upstream] = []


def _is_deepmind_graphcast() -> bool:
  try:
    importlib.import_module("graphcast.gencast")
  except ImportError:
    return False
  return True


def upstream() -> Upstream:
  """Imports DeepMind's GenCast modules; GenCastNotInstalledError if absent."""
  if _CACHE:
    return _CACHE[0]
  errors = []
  if _is_deepmind_graphcast():
    try:
      mods = {m: importlib.import_module(p) for m, p in _GRAPHCAST.items()}
      _CACHE.append(Upstream(layout="graphcast", **mods))
      return _CACHE[0]
    except ImportError as e:  # a dependency of graphcast is missing
      errors.append(f"graphcast: {e}")
  try:
    mods = {m: importlib.import_module(p) for m, p in _WEATHERNEXT.items()}
    _CACHE.append(Upstream(layout="weathernext", **mods))
    return _CACHE[0]
  except ImportError as e:
    errors.append(f"weathernext: {e}")
  raise GenCastNotInstalledError(
      INSTALL_HINT + " (import errors: " + "; ".join(errors) + ")")


def is_available() -> bool:
  """Whether DeepMind's GenCast code can be imported."""
  try:
    upstream()
  except ImportError:
    return False
  return True
