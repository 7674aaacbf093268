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
    >>> from gencast_control.adapters import gencast_tiny as tiny
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
and `gc.assimilate` (README, "GenCast on your station data").

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
