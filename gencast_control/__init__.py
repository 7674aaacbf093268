"""gencast-control: data assimilation as one controlled diffusion rollout.

The public API (see gencast_control.api and the README, "Assimilating your
own observations"):

    load_model, load_controller          frozen ARDM and its controller
    observations_from_dataset            gridded observations, NaN = unobserved
    observations_from_points             a table of point observations
    assimilate                           the analysis ensemble (xarray)
    restart_state                        the initial ensemble of the next cycle
    score, monitoring                    scores against a truth; O-B, O-A
"""

__all__ = ["load_model", "load_controller", "observations_from_dataset",
           "observations_from_points", "assimilate", "restart_state",
           "score", "monitoring", "ObservationSet"]


def __getattr__(name):  # imported on first use: `import gencast_control` is light
  if name in __all__:
    from gencast_control import api
    return getattr(api, name)
  raise AttributeError(f"module 'gencast_control' has no attribute {name!r}")
