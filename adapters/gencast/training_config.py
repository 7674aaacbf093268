"""The settings of GenCast training (adapters/gencast/training.py).

Plain dataclasses, importable without DeepMind's code, so that a config
(configs/heldsuarez_gencast.py) loads everywhere.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gencast_control.core.config import require


@dataclasses.dataclass(frozen=True)
class GenCastArchitectureConfig:
  """A GenCast task and denoiser (DeepMind's TaskConfig and
  DenoiserArchitectureConfig) for a store's variables and levels.

  Attributes:
    surface_variables, atmospheric_variables, levels: the targets (and
      inputs) of the task, as the store names them.
    mesh_size: icosahedral mesh refinements (DeepMind's 1 deg: 4 or 5).
    latent_size, num_layers, num_heads, attention_k_hop: the sparse
      transformer on the mesh.
    noise_frequencies, noise_output_sizes: the noise-level encoder (its
      MLP has exactly 2 layers: DeepMind's NoiseEncoderConfig types
      output_sizes tuple[int, int], and its checkpoint.load refuses others).
    num_noise_levels: the sampler's sub-steps (DeepMind's 20), as the
      checkpoint records them.
    sampling_noise_levels: the sub-steps when the trained model samples in
      the project's commands (controller training, pilot, benchmarks);
      0: num_noise_levels. Fewer sub-steps for the CPU.
    history_length: input frames (DeepMind's 2, 24 h of 12 h steps).
    grid_shape: (lat, lon) of the store's grid.
  """
  surface_variables: tuple[str, ...] = ("surface_pressure",)
  atmospheric_variables: tuple[str, ...] = (
      "temperature", "geopotential", "u_component_of_wind",
      "v_component_of_wind")
  levels: tuple[int, ...] = (250, 500, 850)
  mesh_size: int = 3
  latent_size: int = 64
  num_layers: int = 4
  num_heads: int = 4
  attention_k_hop: int = 8
  noise_frequencies: int = 16
  noise_output_sizes: tuple[int, ...] = (32, 16)
  num_noise_levels: int = 20
  sampling_noise_levels: int = 0
  history_length: int = 2
  grid_shape: tuple[int, int] = (32, 64)

  # The grid experiments' view of the model (splits, pilot): states
  # [lat, lon, C], latitude bounded, longitude periodic.
  periodic = (False, True)

  @property
  def channels(self) -> tuple[str, ...]:
    """GenCast's state channels in its order (adapters/gencast/channels.py
    ChannelLayout: variables sorted by name, levels ascending)."""
    levels = sorted(self.levels)
    return tuple(
        channel for name in sorted(self.surface_variables
                                   + self.atmospheric_variables)
        for channel in ([name] if name in self.surface_variables else
                        [f"{name}@{level}" for level in levels]))

  @property
  def state_shape(self) -> tuple[int, int, int]:
    return tuple(self.grid_shape) + (len(self.channels),)

  def __post_init__(self):
    require(self, positive=("mesh_size", "latent_size", "num_layers",
                            "num_heads", "attention_k_hop",
                            "noise_frequencies", "num_noise_levels",
                            "history_length"),
            nonnegative=("sampling_noise_levels",))
    sizes = tuple(self.noise_output_sizes)
    if len(sizes) != 2 or min(sizes) < 1:
      raise ValueError(
          "noise_output_sizes must be two positive layer sizes (DeepMind's"
          " NoiseEncoderConfig.output_sizes is tuple[int, int]; a checkpoint"
          f" with another length cannot be loaded), got {sizes}")
    if self.latent_size % self.num_heads:
      raise ValueError(f"latent_size {self.latent_size} must be a multiple of"
                       f" num_heads {self.num_heads}")


@dataclasses.dataclass(frozen=True)
class GenCastTrainingConfig:
  """GenCast's training (adamw with warm-up and cosine decay, clipped).

  Attributes:
    variable_weights: ((variable, w_v), ...) of the loss; others weigh 1.
    prefetch: batches read ahead from the store.
  """
  num_steps: int = 3000
  batch_size: int = 4
  learning_rate: float = 1e-3
  seed: int = 0
  checkpoint_every: int = 100
  log_every: int = 25
  variable_weights: tuple[tuple[str, float], ...] = ()
  prefetch: int = 2

  def __post_init__(self):
    require(self, positive=("num_steps", "batch_size", "learning_rate",
                            "checkpoint_every", "log_every"),
            nonnegative=("prefetch",))


def companion_paths(path) -> tuple[Path, Path]:
  """(statistics folder, example file) written beside a checkpoint."""
  path = Path(path)
  return path.with_name(path.name + ".stats"), path.with_name(
      path.name + ".example.nc")
