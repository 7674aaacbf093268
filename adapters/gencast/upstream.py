"""The one place that imports DeepMind's GenCast code, in either layout.

DeepMind's package is NOT the PyPI project named ``graphcast`` (an unrelated
graph-database tool). Install it from its repository, as one of two extras:

    pip install "gencast-control[gencast]"       # graphcast 0.2 (08cf736),
                                                 # jax < 0.8.2, xarray < 2026.4
    pip install "gencast-control[gencast-next]"  # weathernext (9c034db),
                                                 # current jax, xarray <= 2026.2

Layouts: ``graphcast`` (package graphcast 0.2: ``graphcast.<module>``) and
``weathernext`` (its successor: ``weathernext.weathernext1_gen.<module>``,
``weathernext.utils.<module>`` and the top-level ``xarray_jax`` package of
gdm-xarray-jax). Both are tested (docs/gencast.md). The installed one is
used; with both installed, graphcast 0.2 unless the environment variable
GENCAST_CONTROL_LAYOUT=weathernext says otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types

INSTALL_HINT = (
    "DeepMind's GenCast code is not installed. Install an optional extra:"
    " `pip install 'gencast-control[gencast-next]'` (weathernext, current"
    " jax) or `pip install 'gencast-control[gencast]'` (graphcast 0.2 from"
    " git+https://github.com/google-deepmind/graphcast@"
    "08cf73625c9d12bd9aaa038868bcb2fe488f2a22, needs jax<0.8.2 and"
    " xarray<2026.4). Do NOT `pip install graphcast` from PyPI: that name"
    " belongs to an unrelated project.")
LAYOUTS = ("graphcast", "weathernext")
LAYOUT_VARIABLE = "GENCAST_CONTROL_LAYOUT"

# Each layout: our name -> the dotted path of DeepMind's module. `task` holds
# TaskConfig, `variables` the variable lists (ALL_ATMOSPHERIC_VARS).
_GRAPHCAST = {m: f"graphcast.{m}" for m in (
    "casting", "checkpoint", "data_utils", "denoiser", "gencast", "losses",
    "model_utils", "nan_cleaning", "normalization", "rollout",
    "samplers_utils", "xarray_jax", "xarray_tree")}
_GRAPHCAST.update(task="graphcast.graphcast", variables="graphcast.graphcast")

_WEATHERNEXT = {
    "casting": "weathernext.utils.casting",
    "checkpoint": "weathernext.utils.checkpoint",
    "data_utils": "weathernext.utils.data_utils",
    "denoiser": "weathernext.weathernext1_gen.denoiser",
    "gencast": "weathernext.weathernext1_gen.gencast",
    "losses": "weathernext.utils.losses",
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
  losses: types.ModuleType
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


def _layout_order() -> tuple[str, ...]:
  """The layouts to try, the one GENCAST_CONTROL_LAYOUT names first."""
  chosen = os.environ.get(LAYOUT_VARIABLE, "")
  if chosen and chosen not in LAYOUTS:
    raise ValueError(f"{LAYOUT_VARIABLE}={chosen!r}; choose one of {LAYOUTS}")
  if not chosen:
    return LAYOUTS
  return (chosen,) + tuple(name for name in LAYOUTS if name != chosen)


def upstream() -> Upstream:
  """Imports DeepMind's GenCast modules; GenCastNotInstalledError if absent."""
  if _CACHE:
    return _CACHE[0]
  errors = []
  tables = {"graphcast": _GRAPHCAST, "weathernext": _WEATHERNEXT}
  for layout in _layout_order():
    try:
      # graphcast.gencast first: the unrelated PyPI `graphcast` has no such
      # module, so it is never mistaken for DeepMind's.
      mods = {m: importlib.import_module(p)
              for m, p in sorted(tables[layout].items(),
                                 key=lambda item: item[0] != "gencast")}
    except ImportError as e:  # not installed, or a dependency is missing
      errors.append(f"{layout}: {e}")
      continue
    _CACHE.append(Upstream(layout=layout, **mods))
    return _CACHE[0]
  raise GenCastNotInstalledError(
      INSTALL_HINT + " (import errors: " + "; ".join(errors) + ")")


def is_available() -> bool:
  """Whether DeepMind's GenCast code can be imported."""
  try:
    upstream()
  except ImportError:
    return False
  return True
