"""Controlled GenCast: GenCast's call contract with the controller in its sampler.

`ControlledGenCast` subclasses DeepMind's `gencast.GenCast` (same haiku modules,
so the same parameter tree and checkpoints) and replaces its sampler by
`ControlledSampler`. It is wrapped exactly as upstream's demo does
(`normalization.InputsAndResiduals` inside `nan_cleaning.NaNCleaner`), so it
takes the same (inputs, targets_template, forcings) xarray Datasets and returns
the same predictions; the observation preview travels as the keyword argument
`preview`, which both wrappers pass through.

At every sub-step the controller sees, on the [lat, lon, C] grid of the target
channels (channels.ChannelLayout):

* state:        the sub-step state x_hat (GenCast's normalised residual),
* denoised:     the denoised estimate as a normalised state (x - mean) / std,
* sigma:        the sub-step noise level sigma_hat,
* conditioning: all normalised inputs and forcings stacked as channels,
* preview:      observations of steps n+1..n+H normalised like states, their
                masks and offsets.

`GenCastPredictor` is the host-side drop-in: jitted one-step sampling with
upstream's `predictor_fn(rng, inputs, targets_template, forcings)` signature
(usable with `rollout.chunked_prediction*`), ensembles on a `sample` dim with
member keys fold_in(rng, m) as in DeepMind's demo, and a rollout loop that
passes each step's preview buffer and step index (upstream's cannot).
"""

from __future__ import annotations

import copy
from typing import NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gencast_control.adapters.gencast.assets import (GenCastModel,
                                                     NormalizationStats)
from gencast_control.adapters.gencast.channels import (ChannelLayout,
                                                       ChannelStats, check_call)
from gencast_control.adapters.gencast.controller import controller_transform
from gencast_control.adapters.gencast.sampler import ControlledSampler
from gencast_control.adapters.gencast.upstream import upstream
from gencast_control.core.ardm import (ControllerFn, ControllerInputs,
                                       GuidanceFn, GuidanceInputs)
from gencast_control.core.observations import Preview


_gc = upstream()  # raises GenCastNotInstalledError (an ImportError) if absent


def stack_conditioning(inputs: xr.Dataset,
                       forcings: Optional[xr.Dataset]) -> jax.Array:
  """[batch, lat, lon, C_cond]: (normalised) inputs and forcings as channels."""
  gc = upstream()
  parts = [gc.model_utils.dataset_to_stacked(inputs)]
  if forcings is not None and forcings.data_vars:
    parts.append(gc.model_utils.dataset_to_stacked(
        forcings, sizes=inputs.sizes))
  return jnp.concatenate(
      [jnp.asarray(gc.xarray_jax.unwrap_data(
          p.transpose("batch", "lat", "lon", "channels"))) for p in parts],
      axis=-1)


def last_input_frame(inputs: xr.Dataset, layout: ChannelLayout,
                     template: xr.Dataset) -> jax.Array:
  """[batch, lat, lon, C]: the last input frame of each target (0 if absent)."""
  frames = {}
  for name in layout.variables:
    if name in inputs.data_vars:
      frames[name] = inputs[name].isel(time=-1, drop=True)
    else:
      frames[name] = xr.zeros_like(template[name].isel(time=0, drop=True))
  return jnp.asarray(layout.stack(xr.Dataset(frames)))


class _StepContext(NamedTuple):
  """Per-step controller context, in normalised state units."""
  layout: ChannelLayout
  channel_stats: ChannelStats
  conditioning: jax.Array   # [B, lat, lon, C_cond]
  norm_last: jax.Array      # [B, lat, lon, C]
  preview: Preview          # values/mask [H, ...] or [B, H, ...]

  def estimate(self, denoised: xr.Dataset) -> jax.Array:
    """The denoised estimate as a normalised state [B, lat, lon, C]."""
    return self.channel_stats.denoised_to_state(
        jnp.asarray(self.layout.stack(denoised)), self.norm_last)


class ControlledGenCast(_gc.gencast.GenCast):
  """gencast.GenCast whose sampler sub-steps add (sigma_hat - sigma_next) u.

  With `guidance` (a rule of gencast_control.baselines.guidance on
  physical [lat, lon, C] states, batch 1) the rule's u is added instead of
  the controller's.
  """

  def __init__(self, task_config, denoiser_architecture_config,
               sampler_config=None, noise_config=None,
               noise_encoder_config=None, *,
               stats: Optional[NormalizationStats] = None,
               controller: Optional[ControllerFn] = None,
               remat: bool = False,
               guidance: Optional[GuidanceFn] = None):
    super().__init__(task_config=task_config,
                     denoiser_architecture_config=denoiser_architecture_config,
                     sampler_config=sampler_config, noise_config=noise_config,
                     noise_encoder_config=noise_encoder_config)
    if (controller is not None or guidance is not None) and stats is None:
      raise ValueError("a controlled GenCast needs the normalisation stats")
    if controller is not None and guidance is not None:
      raise ValueError("a step takes a controller or a guidance rule, not"
                       " both")
    self._task_config = task_config
    self._stats = stats
    self._controller = controller
    self._remat = remat
    self._guidance = guidance
    # The traced control energy of the latest call (same transform only).
    self.last_control_energy = None

  def _context(self, inputs, targets_template, forcings, preview):
    layout = ChannelLayout.from_template(targets_template)
    channel_stats = ChannelStats.create(
        layout, self._stats, self._task_config.input_variables)
    if preview is None:  # a guidance rule brings its own observations
      return _StepContext(layout, channel_stats, None,
                          last_input_frame(inputs, layout, targets_template),
                          None)
    values = jnp.asarray(preview.values, jnp.float32)
    mask = jnp.asarray(preview.mask, jnp.float32)
    if values.shape[-3:] != layout.spatial_shape + (layout.num_channels,):
      raise ValueError(
          f"preview frames have shape {values.shape[-3:]}, GenCast's"
          f" channel layout needs {layout.spatial_shape + (layout.num_channels,)}"
          f" ({', '.join(layout.channel_names)})")
    if values.ndim not in (4, 5) or mask.shape != values.shape:
      raise ValueError(
          "preview values and mask must both have shape [H, lat, lon, C] or"
          f" [batch, H, lat, lon, C], got {values.shape} and {mask.shape}")
    spread = preview.ensemble_spread
    if spread is not None:
      spread = jnp.asarray(spread, jnp.float32)
      if spread.shape != values.shape[:-4] + values.shape[-3:]:
        raise ValueError(
            f"preview ensemble_spread has shape {spread.shape}; with preview"
            f" values {values.shape} it must be"
            f" {values.shape[:-4] + values.shape[-3:]}")
    norm_preview = preview._replace(
        ensemble_spread=spread,
        values=values, mask=mask,
        offsets=jnp.asarray(preview.offsets, jnp.float32),
        error_std=jnp.asarray(preview.error_std, jnp.float32)).in_units(
            channel_stats.normalize, channel_stats.std)
    return _StepContext(layout, channel_stats,
                        stack_conditioning(inputs, forcings),
                        last_input_frame(inputs, layout, targets_template),
                        norm_preview)

  def _control_fn(self, context: _StepContext):
    preview_axis = 0 if context.preview.values.ndim == 5 else None
    in_axes = ControllerInputs(
        state=0, denoised=0, sigma=None, conditioning=0,
        preview=Preview(preview_axis, preview_axis, None, preview_axis,
                        preview_axis))
    controller = jax.vmap(self._controller, in_axes=(in_axes,))

    def control(x_hat, denoised, sigma_hat, substep):
      del substep
      state = jnp.asarray(context.layout.stack(x_hat))
      u = controller(ControllerInputs(state, context.estimate(denoised),
                                      sigma_hat, context.conditioning,
                                      context.preview))
      return context.layout.unstack(u.astype(state.dtype), x_hat)

    return control

  def _guide_fn(self, context: _StepContext):
    """The sampler's guide from the rule: GuidanceInputs in physical units.

    In the sampler's variable d, residual channels are x = x_n + s_d d
    (s_d: the 12 h difference std) and the others x = m + s d, so the
    physical estimate, its inverse and the scale follow per channel.
    """
    stats = context.channel_stats
    residual = stats.is_residual > 0
    scale = jnp.asarray(np.where(residual, stats.diffs_std, stats.std))
    last = (context.norm_last * stats.std + stats.mean)[0]  # [lat, lon, C]
    offset = jnp.where(residual, last, stats.mean)

    def guide(x_hat, denoised, sigma_hat, sigma_next, substep, denoise, move):
      stack = lambda ds: jnp.asarray(context.layout.stack(ds))[0]
      unstack = lambda a: context.layout.unstack(a[None], x_hat)
      u = self._guidance(GuidanceInputs(
          state=stack(x_hat), sigma=sigma_hat, sigma_next=sigma_next,
          denoised=stack(denoised), substep=substep,
          estimate=lambda z: offset + scale * stack(denoise(unstack(z))),
          to_variable=lambda x: (x - offset) / scale,
          move=lambda z, d: stack(move(unstack(z), unstack(d))),
          scale=scale))
      return unstack(u.astype(stack(x_hat).dtype))

    return guide

  def __call__(self, inputs, targets_template, forcings=None, *,
               preview: Optional[Preview] = None, **kwargs):
    del kwargs  # e.g. the step index: not used by the sampler itself
    if self._sampler_config is None:
      raise ValueError(
          "Sampler config must be specified to run inference on GenCast.")
    sampler = ControlledSampler(self._preconditioned_denoiser,
                                self._sampler_config, remat=self._remat)
    control = guide = None
    if self._guidance is not None:
      guide = self._guide_fn(self._context(inputs, targets_template, forcings,
                                           None))
    elif self._controller is not None:
      if preview is None:
        raise ValueError("a controlled GenCast call needs preview=Preview(...)"
                         " of the observations ahead")
      control = self._control_fn(self._context(inputs, targets_template,
                                                forcings, preview))
    prediction, energy = sampler(inputs, targets_template, forcings, control,
                                 guide)
    self.last_control_energy = energy
    return prediction


def wrap_predictor(predictor, stats: NormalizationStats):
  """Upstream's wrapping: NaNCleaner(InputsAndResiduals(predictor)).

  As DeepMind's demo: residual normalisation, then NaN cleaning of sea
  surface temperature (filled with min_by_level, NaNs reintroduced in the
  predictions). The cleaner is added when the statistics hold
  sea_surface_temperature, as DeepMind's do (a custom task without it would
  otherwise fail in NaNCleaner's constructor).
  """
  gc = upstream()
  predictor = gc.normalization.InputsAndResiduals(
      predictor, diffs_stddev_by_level=stats.diffs_stddev_by_level,
      mean_by_level=stats.mean_by_level,
      stddev_by_level=stats.stddev_by_level)
  if "sea_surface_temperature" in stats.min_by_level:
    predictor = gc.nan_cleaning.NaNCleaner(
        predictor=predictor, reintroduce_nans=True,
        fill_value=stats.min_by_level, var_to_clean="sea_surface_temperature")
  return predictor


def construct_predictor(model: GenCastModel,
                        controller: Optional[ControllerFn] = None,
                        remat: bool = False,
                        guidance: Optional[GuidanceFn] = None):
  """(wrapped predictor, its ControlledGenCast core); call inside hk.transform."""
  core = ControlledGenCast(
      task_config=model.task_config,
      denoiser_architecture_config=model.denoiser_architecture_config,
      sampler_config=model.sampler_config, noise_config=model.noise_config,
      noise_encoder_config=model.noise_encoder_config, stats=model.stats,
      controller=controller, remat=remat, guidance=guidance)
  return wrap_predictor(core, model.stats), core


def construct_upstream_predictor(model: GenCastModel):
  """DeepMind's own wrapped gencast.GenCast (for comparisons)."""
  core = _gc.gencast.GenCast(
      task_config=model.task_config,
      denoiser_architecture_config=model.denoiser_architecture_config,
      sampler_config=model.sampler_config, noise_config=model.noise_config,
      noise_encoder_config=model.noise_encoder_config)
  return wrap_predictor(core, model.stats)


def forward_transform(model: GenCastModel, controller_apply=None,
                      remat: bool = False,
                      guidance: Optional[GuidanceFn] = None
                      ) -> hk.TransformedWithState:
  """hk.transform_with_state of one (optionally controlled) GenCast step.

  The transformed function is f(inputs, targets_template, forcings,
  controller_params=None, preview=None) -> (predictions, control energy);
  `controller_apply(params, ControllerInputs) -> u` is the controller;
  `guidance` runs a guidance rule (GuidanceFn) in every sub-step instead.
  """

  def forward(inputs, targets_template, forcings, controller_params=None,
              preview=None):
    controller = None
    if controller_apply is not None:
      controller = lambda x: controller_apply(controller_params, x)
    predictor, core = construct_predictor(model, controller, remat,
                                          guidance)
    prediction = predictor(inputs, targets_template=targets_template,
                           forcings=forcings, preview=preview)
    return prediction, core.last_control_energy

  return hk.transform_with_state(forward)


def upstream_forward_transform(model: GenCastModel) -> hk.TransformedWithState:
  """hk.transform_with_state of DeepMind's wrapped GenCast (demo's run_forward)."""

  def forward(inputs, targets_template, forcings):
    predictor = construct_upstream_predictor(model)
    return predictor(inputs, targets_template=targets_template,
                     forcings=forcings)

  return hk.transform_with_state(forward)


class GenCastPredictor:
  """Jitted GenCast sampling, optionally controlled: the drop-in replacement.

  Without a controller it samples exactly like DeepMind's GenCast (same key,
  same output). With one, every call needs the observation preview. With a
  guidance rule (gencast_control.baselines.guidance, e.g. DPS toward one
  step's observations) every call is guided by it. Rollouts over many steps,
  plain, controlled or guided, run through `GenCastARDM` and the project's
  one rollout (gc.assimilate, assimilation.ensemble_rollout,
  guidance.assimilate_baseline).
  """

  def __init__(self, model: GenCastModel, controller_config=None,
               controller_params=None, check_inputs: bool = True,
               guidance: Optional[GuidanceFn] = None):
    """Args:
      model: the frozen GenCast.
      controller_config, controller_params: u_psi, or None for plain GenCast.
      check_inputs: check the call contract (variables, dims, lat order,
        grid, NaN) on the host before each call.
      guidance: a guidance rule for one step (GuidanceFn on physical
        [lat, lon, C] states, batch 1) instead of a controller.
    """
    self.model = model
    self.controller_config = controller_config
    self.controller_params = controller_params
    self.check_inputs = check_inputs
    if (controller_config is None) != (controller_params is None):
      raise ValueError("give both controller_config and controller_params, or"
                       " neither")
    if controller_config is not None and guidance is not None:
      raise ValueError("a GenCastPredictor takes a controller or a guidance"
                       " rule, not both")
    self._guided = guidance is not None
    self._plain = forward_transform(model)
    self._plain_fn = jax.jit(self._apply_plain)
    self._controlled_fn = None
    if controller_config is not None or guidance is not None:
      apply = (None if controller_config is None
               else controller_transform(controller_config).apply)
      self._controlled = forward_transform(model, apply, guidance=guidance)
      self._controlled_fn = jax.jit(self._apply_controlled)

  def with_controller_params(self, controller_params) -> "GenCastPredictor":
    """The same (compiled) predictor with other controller parameters."""
    if self.controller_config is None:
      raise ValueError("this predictor has no controller")
    other = copy.copy(self)
    other.controller_params = controller_params
    return other

  @property
  def controlled(self) -> bool:
    """Whether calls are controlled or guided."""
    return self._controlled_fn is not None

  def _apply_plain(self, params, rng, inputs, targets_template, forcings):
    (prediction, _), _ = self._plain.apply(params, {}, rng, inputs,
                                           targets_template, forcings)
    return prediction

  def _apply_controlled(self, params, controller_params, rng, inputs,
                        targets_template, forcings, preview):
    (prediction, energy), _ = self._controlled.apply(
        params, {}, rng, inputs, targets_template, forcings,
        controller_params, preview)
    return prediction, energy

  def _check(self, inputs, targets_template, forcings):
    if self.check_inputs:
      check_call(inputs, targets_template, forcings, self.model.task_config,
                 self.model.grid_shape)

  def __call__(self, rng, inputs: xr.Dataset, targets_template: xr.Dataset,
               forcings: xr.Dataset, preview: Optional[Preview] = None,
               step: int | None = None) -> xr.Dataset:
    """One sample of the next step(s) (upstream's predictor_fn signature)."""
    del step  # the preview is already the buffer of this step
    self._check(inputs, targets_template, forcings)
    if not self.controlled:
      return self._plain_fn(self.model.params, rng, inputs, targets_template,
                            forcings)
    if preview is None and not self._guided:
      raise ValueError("this predictor is controlled: pass the preview of"
                       " the observations ahead (preview=...)")
    return self.controlled_step(rng, inputs, targets_template, forcings,
                                preview)[0]

  def controlled_step(self, rng, inputs: xr.Dataset,
                      targets_template: xr.Dataset, forcings: xr.Dataset,
                      preview: Preview) -> tuple[xr.Dataset, jax.Array]:
    """(prediction, control energy sum_s mean(u_s^2)) of one controlled step."""
    if not self.controlled:
      raise ValueError("this predictor has no controller")
    self._check(inputs, targets_template, forcings)
    return self._controlled_fn(self.model.params, self.controller_params, rng,
                               inputs, targets_template, forcings, preview)

  def sample(self, rng, inputs, targets_template, forcings,
             num_samples: int, preview: Optional[Preview] = None,
             progress: bool = False) -> xr.Dataset:
    """An ensemble on a `sample` dim, member m drawn with fold_in(rng, m);
    progress: a tqdm bar over the members (each takes GenCast's 20
    sub-steps of two denoiser calls)."""
    if num_samples < 1:
      raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    from tqdm.auto import tqdm
    members = []
    for m in tqdm(range(num_samples), desc="GenCast members",
                  disable=not progress):
      member = self(jax.random.fold_in(rng, m), inputs, targets_template,
                    forcings, preview)
      members.append(jax.device_get(member).assign_coords(sample=m))
    return xr.concat(members, dim="sample")
