"""GenCast adapter: DeepMind's GenCast as a frozen ARDM steered by a controller.

DeepMind's GenCast (Price et al. 2024, arXiv 2312.15796; package `graphcast`
0.2 from its git repository, later `weathernext`) is loaded from its own
checkpoints and statistics, wrapped exactly as upstream does, and sampled by a
DPM-Solver++ 2S sampler written here that adds the controller's correction
(sigma_hat - sigma_next) u in every sub-step (Srivastava et al. 2025, arXiv
2510.06637). With u = 0 it reproduces upstream's samples bit for bit.

    from gencast_control.adapters import gencast as g
    model = g.load_model("1p0deg_mini", stats="bucket")      # or local paths
    predictor = g.GenCastPredictor(model)                    # = upstream GenCast
    ensemble = predictor.sample(rng, inputs, targets * np.nan, forcings, 8)

    # assimilation: the public API, as for every model (gencast_control.api)
    import gencast_control as gc
    ardm = gc.load_model("1p0deg_mini", stats="bucket", example=example)
    obs = gc.observations_from_points("stations.csv", ardm, initial)
    analysis = gc.assimilate(ardm, gc.load_controller(path, ardm), obs,
                             initial, members=8, progress=True)

    # training: GenCast as a FrozenARDM, through the project's one training path
    ardm = g.GenCastARDM(model, inputs, targets, forcings)
    states, context = ardm.trajectories(inputs, targets, forcings)
    params, history = g.train_controller(
        ardm, states, ardm.in_physical_units(regimes), controller_config,
        g.ControllerTrainingConfig(objective="state", window=1, spinup=0),
        context=context)
    g.save_controller("controller.npz", params, controller_config, ardm)

Modules: gencast_upstream (imports, install hint), gencast_assets (checkpoints,
statistics, attention per backend), gencast_channels (xarray <-> [lat, lon, C],
input checks), gencast_sampler (the controlled sampler), gencast_predictor
(ControlledGenCast, GenCastPredictor: one step, DeepMind's contract), gencast_controller (u_psi on
the lat/lon grid), gencast_ardm (GenCast as a FrozenARDM: the project's
rollout, controller checkpoints and training), gencast_tiny (tiny and Mini-architecture random models, synthetic data).
Importing this module without DeepMind's package raises
GenCastNotInstalledError (an ImportError) that says how to install it.
"""

from gencast_control.adapters.gencast_upstream import (  # noqa: F401
    INSTALL_HINT, GenCastNotInstalledError, is_available, upstream)

upstream()  # fail here, with the install hint, if DeepMind's code is absent

# pylint: disable=g-import-not-at-top,wrong-import-position
from gencast_control.adapters.gencast_assets import (  # noqa: E402,F401
    AssetUnavailableError, GenCastModel, NormalizationStats,
    attention_type_for_backend, load_checkpoint, load_example, load_model,
    load_stats, model_from_checkpoint, with_attention_for_backend)
from gencast_control.adapters.gencast_channels import (  # noqa: E402,F401
    ChannelLayout, ChannelStats, check_call, check_grid)
from gencast_control.adapters.gencast_ardm import (  # noqa: E402,F401
    GenCastARDM)
from gencast_control.adapters.gencast_controller import (  # noqa: E402,F401
    controller_transform, gencast_fingerprint, parameter_count)
from gencast_control.adapters.gencast_predictor import (  # noqa: E402,F401
    ControlledGenCast, GenCastPredictor, construct_predictor,
    construct_upstream_predictor, forward_transform,
    last_input_frame, stack_conditioning, upstream_forward_transform,
    wrap_predictor)
from gencast_control.adapters.gencast_sampler import (  # noqa: E402,F401
    ControlledSampler)
# The project's generic controller code, which serves GenCast via GenCastARDM.
from gencast_control.core.controller import (  # noqa: E402,F401
    init_controller, load_controller, save_controller)
from gencast_control.training.controller_training import (  # noqa: E402,F401
    ControllerTrainingConfig, train_controller)
