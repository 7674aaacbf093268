"""The controller u_psi on GenCast's lat/lon grid, and its checkpoints.

The network is the project's conv controller (gencast_control.controller) on
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

(GenCast 1p0deg Mini has 57.5 M parameters.) A checkpoint records the config,
the channel layout and the fingerprint of the GenCast parameters it was
trained against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from gencast_control import checkpoint as checkpoint_lib
from gencast_control import config as config_lib
from gencast_control.adapters.gencast_assets import GenCastModel
from gencast_control.adapters.gencast_channels import ChannelLayout
from gencast_control.ardm import ControllerInputs
from gencast_control.controller import (ControllerConfig,
                                        config_from_metadata, make_controller)
from gencast_control.observations import Preview

# lat is not periodic (edge padding at the poles), lon is.
LAT_LON_PERIODIC = (False, True)
CHECKPOINT_KIND = "gencast_controller"


def controller_transform(config: ControllerConfig) -> hk.Transformed:
  """u_psi on [lat, lon, C]: apply(params, ControllerInputs) -> u."""
  return make_controller(config, LAT_LON_PERIODIC)


def init_controller_params(config: ControllerConfig, layout: ChannelLayout,
                           conditioning_channels: int,
                           key: jax.Array) -> hk.Params:
  """Initial parameters (zero output layer: u = 0, GenCast unchanged)."""
  shape = layout.spatial_shape + (layout.num_channels,)
  zeros = jnp.zeros(shape, jnp.float32)
  frames = jnp.zeros((config.horizon,) + shape, jnp.float32)
  dummy = ControllerInputs(
      state=zeros, denoised=zeros, sigma=jnp.ones(()),
      conditioning=jnp.zeros(layout.spatial_shape + (conditioning_channels,)),
      preview=Preview(frames, frames,
                      jnp.arange(1, config.horizon + 1, dtype=jnp.float32),
                      frames))
  return controller_transform(config).init(key, dummy)


def parameter_count(params: hk.Params) -> int:
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def gencast_fingerprint(model: GenCastModel) -> str:
  """A stable hash of GenCast's architecture and parameters."""
  digest = hashlib.sha256()
  digest.update(json.dumps(
      dataclasses.asdict(model.denoiser_architecture_config), sort_keys=True,
      default=str).encode())
  digest.update(json.dumps(dataclasses.asdict(model.task_config),
                           sort_keys=True, default=str).encode())
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(model.params)[0],
                           key=lambda item: jax.tree_util.keystr(item[0])):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.asarray(leaf).tobytes())
  return "gencast-" + digest.hexdigest()[:16]


def save_controller(path, params: hk.Params, config: ControllerConfig,
                    layout: ChannelLayout, conditioning_channels: int,
                    model: GenCastModel, metadata: dict | None = None):
  """Writes u_psi atomically with its config, layout and GenCast fingerprint."""
  meta = dict(metadata or {}, kind=CHECKPOINT_KIND,
              config=config_lib.to_dict(config),
              channel_names=list(layout.channel_names),
              grid_shape=list(layout.spatial_shape),
              conditioning_channels=int(conditioning_channels),
              gencast_fingerprint=gencast_fingerprint(model))
  return checkpoint_lib.save_checkpoint(path, params, meta)


def load_controller(path, model: GenCastModel | None = None,
                    layout: ChannelLayout | None = None):
  """(config, params, metadata); checks the GenCast and layout it was made for."""
  params, meta = checkpoint_lib.load_checkpoint(path,
                                                expected_kind=CHECKPOINT_KIND)
  if model is not None and meta.get("gencast_fingerprint") != (
      fingerprint := gencast_fingerprint(model)):
    raise checkpoint_lib.CheckpointError(
        f"controller {path} was trained for GenCast"
        f" {meta.get('gencast_fingerprint')}, not for {fingerprint}")
  if layout is not None and (
      tuple(meta.get("channel_names", ())) != layout.channel_names
      or tuple(meta.get("grid_shape", ())) != layout.spatial_shape):
    raise checkpoint_lib.CheckpointError(
        f"controller {path} was trained on grid {meta.get('grid_shape')} with"
        f" channels {meta.get('channel_names')}, not on"
        f" {list(layout.spatial_shape)} with {list(layout.channel_names)}")
  config = config_from_metadata(path, meta)
  params = jax.tree.map(jnp.asarray, params)
  return config, params, meta
