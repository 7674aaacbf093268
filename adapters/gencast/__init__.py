"""GenCast adapter: DeepMind's GenCast as a frozen ARDM steered by a controller.

DeepMind's GenCast (Price et al. 2024, arXiv 2312.15796; package `graphcast`
0.2 from its git repository, later `weathernext`) is loaded from its own
checkpoints and statistics, wrapped exactly as upstream does, and sampled by a
DPM-Solver++ 2S sampler written here that adds the controller's correction
(sigma_hat - sigma_next) u in every sub-step (Srivastava et al. 2025, arXiv
2510.06637). With u = 0 it reproduces upstream's samples bit for bit.

    >>> import jax, numpy as np
    >>> import gencast_control as gc
    >>> from gencast_control.adapters import gencast as g
    >>> from gencast_control.adapters.gencast import tiny
    >>> # offline: a tiny random GenCast; DeepMind's: g.load_model("1p0deg_mini",
    >>> # stats="bucket") and g.load_example("era5_1p0deg_2019-03-29_30steps")
    >>> model, example = tiny.offline_assets(num_steps=1)
    >>> inputs, targets, forcings = tiny.split_example(model.task_config,
    ...                                                example, 1)
    >>> predictor = g.GenCastPredictor(model)                # = DeepMind's GenCast
    >>> ensemble = predictor.sample(jax.random.PRNGKey(0), inputs,
    ...                             targets * np.nan, forcings, num_samples=2)
    >>> ensemble.sizes["sample"]
    2
    >>> # assimilation: GenCast as a FrozenARDM, through the public API
    >>> ardm = g.GenCastARDM.from_example(model, example)
    >>> str(ardm.layout.timestep.astype("timedelta64[h]"))
    '12 hours'

Training the controller goes through the project's one training path
(`g.train_controller` on `ardm.trajectories(...)`), assimilation through
`gc.load_model(checkpoint, stats=, example=)`, `gc.observations_from_points`
and `gc.assimilate` (docs/gencast.md).

Modules of this package: upstream (the one place that imports DeepMind's
code; the install hint), assets (checkpoints, statistics, attention per
backend), channels (xarray <-> [lat, lon, C], input checks), sampler (the
controlled sampler), predictor (ControlledGenCast, GenCastPredictor: one step,
DeepMind's contract), controller (u_psi on the lat/lon grid), ardm (GenCast as
a FrozenARDM: the project's rollout, controller checkpoints and training),
tiny (tiny and Mini-architecture random models, synthetic data), job (the
cloud training job and its config class, GenCastJobConfig).

Importing this package, `upstream` and `job` needs no DeepMind code. The
facade's names (`g.GenCastPredictor`, `g.load_model`, ... `__all__`) are
imported on first use, and without DeepMind's package that first use raises
GenCastNotInstalledError (an ImportError) that says how to install it.
DeepMind's modules themselves: `g.upstream.upstream()`.
"""

from gencast_control.adapters.gencast import upstream  # no DeepMind code
from gencast_control.adapters.gencast.upstream import (  # noqa: F401
    INSTALL_HINT, GenCastNotInstalledError, is_available)

# The facade's names, each -> the module that defines it (under
# gencast_control); all need DeepMind's code.
_NAMES = {
    **dict.fromkeys((
        "AssetUnavailableError", "GenCastModel", "NormalizationStats",
        "attention_type_for_backend", "load_checkpoint", "load_example",
        "load_model", "load_stats", "model_from_checkpoint",
        "with_attention_for_backend"), "adapters.gencast.assets"),
    **dict.fromkeys(("ChannelLayout", "ChannelStats", "check_call",
                     "check_grid"), "adapters.gencast.channels"),
    "GenCastARDM": "adapters.gencast.ardm",
    **dict.fromkeys(("controller_transform", "gencast_fingerprint",
                     "parameter_count"), "adapters.gencast.controller"),
    **dict.fromkeys((
        "ControlledGenCast", "GenCastPredictor", "construct_predictor",
        "construct_upstream_predictor", "forward_transform",
        "last_input_frame", "stack_conditioning",
        "upstream_forward_transform", "wrap_predictor"),
                    "adapters.gencast.predictor"),
    "ControlledSampler": "adapters.gencast.sampler",
    # The project's generic controller code, which serves GenCast via
    # GenCastARDM.
    **dict.fromkeys(("init_controller", "load_controller", "save_controller"),
                    "core.controller"),
    **dict.fromkeys(("ControllerTrainingConfig", "train_controller"),
                    "training.controller_training"),
}
__all__ = ["INSTALL_HINT", "GenCastNotInstalledError", "is_available",
           "upstream"] + list(_NAMES)


def __getattr__(name):
  """A facade name, imported on first use (PEP 562)."""
  if name not in _NAMES:
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}")
  import importlib  # pylint: disable=g-import-not-at-top
  upstream.upstream()  # GenCastNotInstalledError, with the install hint
  module = importlib.import_module(f"gencast_control.{_NAMES[name]}")
  value = globals()[name] = getattr(module, name)
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
