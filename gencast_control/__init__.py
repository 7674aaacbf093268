"""gencast-control: data assimilation as one controlled diffusion rollout.

The public API. Assimilating your own observations (gencast_control.api and
docs/own_observations.md):

    load_model, load_controller          any frozen ARDM (grid, GenCast, yours)
                                         and its controller
    observations_from_dataset            gridded observations, NaN = unobserved
    observations_from_points             a station table (lat/lon/level, dates)
    assimilate                           the analysis ensemble (xarray)
    write_analysis                       NetCDF/zarr with CF attributes
    restart_state                        the initial ensemble of the next cycle
    score, monitoring                    scores against a truth; O-B, O-A

Building blocks, for a model stack of your own (docs/architecture.md):

    FrozenARDM, ControllerInputs         the protocol (gencast_control.core.ardm)
    ControllerConfig, init_controller, bind_controller, save_controller
    Observations, Preview, ObservationRegime, sample_observations
    rollout, ensemble_rollout            the causal controlled rollout
    ControllerTrainingConfig, train_controller
    load_config                          a built-in or file config, --set overrides

Everything is imported on first use, so `import gencast_control` is light.
`gencast_control.__version__` is the installed distribution's version.
"""

from importlib import metadata as _metadata

try:
  __version__ = _metadata.version("gencast-control")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
  __version__ = "0.1.0"  # keep equal to pyproject.toml's [project] version

_API = ("load_model", "load_controller", "observations_from_dataset",
        "observations_from_points", "assimilate", "write_analysis",
        "restart_state", "score", "monitoring", "ObservationSet")
_BUILDING_BLOCKS = {
    "FrozenARDM": "core.ardm", "ControllerInputs": "core.ardm",
    "StateLayout": "core.layout",
    "ControllerConfig": "core.controller",
    "init_controller": "core.controller", "bind_controller": "core.controller",
    "save_controller": "core.controller",
    "Observations": "core.observations", "Preview": "core.observations",
    "ObservationRegime": "core.regimes",
    "sample_observations": "core.regimes",
    "rollout": "core.assimilation", "ensemble_rollout": "core.assimilation",
    "ControllerTrainingConfig": "training.controller_training",
    "train_controller": "training.controller_training",
    "load_config": "core.config",
}
__all__ = list(_API) + list(_BUILDING_BLOCKS)


def __getattr__(name):
  import importlib
  if name in _API:
    return getattr(importlib.import_module("gencast_control.api"), name)
  if name in _BUILDING_BLOCKS:
    module = importlib.import_module(f"gencast_control.{_BUILDING_BLOCKS[name]}")
    return getattr(module, name)
  raise AttributeError(f"module 'gencast_control' has no attribute {name!r}")
