"""The controller u_psi on GenCast's lat/lon grid, and its checkpoints.

The network is the project's conv controller (gencast_control.core.controller) on
[lat, lon, C] grids, periodic in longitude and edge-padded in latitude. Its
input features are GenCast's target channels (state, denoised estimate and,
per preview frame, values, masks, log error stds and innovations) plus the
conditioning channels (normalised inputs and forcings): C (2 + 4H) + C_cond
features. The parameter count depends on these channel counts, not on the
resolution. For DeepMind's GenCast task (C = 84 targets, C_cond = 180) with
the default ControllerConfig (encoder width 24, kernel 5, 2 blocks; head
width 16, 1 block; counted with jax.eval_shape of its init):

    horizon H   parameters   input features   features per sample, float32
        1         367,580          684          170 MiB (1 deg)  2.6 GiB (0.25 deg)
        2         530,908         1020          254 MiB          3.9 GiB
        4         857,564         1692          421 MiB          6.5 GiB

(GenCast 1p0deg Mini has 57.5 M parameters.) Its parameters are initialised,
saved and loaded by gencast_control.core.controller (init_controller,
save_controller, load_controller) with a GenCastARDM (adapters/gencast/ardm.py),
whose fingerprint covers GenCast's parameters and the channel layout.
"""

from __future__ import annotations


import haiku as hk
import jax
import numpy as np

from gencast_control.adapters.gencast.assets import GenCastModel
from gencast_control.core.ardm import model_fingerprint
from gencast_control.core.controller import ControllerConfig, make_controller

# lat is not periodic (edge padding at the poles), lon is.
LAT_LON_PERIODIC = (False, True)


def controller_transform(config: ControllerConfig) -> hk.Transformed:
  """u_psi on [lat, lon, C]: apply(params, ControllerInputs) -> u."""
  return make_controller(config, LAT_LON_PERIODIC)


def parameter_count(params: hk.Params) -> int:
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def gencast_fingerprint(model: GenCastModel) -> str:
  """A stable hash of GenCast's architecture and parameters."""
  return model_fingerprint("gencast", [model.denoiser_architecture_config,
                                       model.task_config], model.params)
