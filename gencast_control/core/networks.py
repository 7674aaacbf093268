"""Small haiku convolutional networks on channel-last grids [*spatial, C].

One architecture serves both the ARDM denoiser F_theta and the controller u_psi:
a residual stack of dilated convolutions with FiLM conditioning on a vector
embedding (noise level, time offsets). Periodic axes are wrap-padded, the others
edge-padded (e.g. latitude on a lat/lon grid), so the receptive field respects
the domain's topology.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import haiku as hk
import jax
import jax.numpy as jnp
from gencast_control.core.config import require


@dataclasses.dataclass(frozen=True)
class ConvNetConfig:
  """A residual dilated-convolution network.

  Attributes:
    width: hidden channels.
    num_blocks: residual blocks (two convolutions each).
    kernel_size: convolution kernel size along every spatial axis.
    dilations: dilation of block b is dilations[b % len(dilations)].
    embedding_size: width of the conditioning embedding MLP.
  """
  width: int = 32
  num_blocks: int = 4
  kernel_size: int = 5
  dilations: tuple[int, ...] = (1, 2, 4, 8)
  embedding_size: int = 64

  def __post_init__(self):
    require(self, positive=("width", "num_blocks", "kernel_size",
                            "embedding_size"))
    if not self.dilations or min(self.dilations) < 1:
      raise ValueError(f"ConvNetConfig.dilations must be a non-empty tuple of"
                       f" integers >= 1, got {self.dilations!r}")


def fourier_embedding(x: jax.Array, size: int) -> jax.Array:
  """Sinusoidal embedding of a scalar: [sin(2^k x), cos(2^k x)]_k, k < size/2."""
  freqs = 2.0**jnp.arange(size // 2, dtype=jnp.float32) / 8.0
  angles = x * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


def pad_spatial(x: jax.Array, pad: int, periodic: Sequence[bool]) -> jax.Array:
  """Pads each spatial axis of [*spatial, C] by `pad` (wrap or edge)."""
  for axis, wrap in enumerate(periodic):
    widths = [(0, 0)] * x.ndim
    widths[axis] = (pad, pad)
    x = jnp.pad(x, widths, mode="wrap" if wrap else "edge")
  return x


class ConvNet(hk.Module):
  """Residual dilated conv net: [*spatial, C_in], embedding -> [*spatial, C_out]."""

  def __init__(self, config: ConvNetConfig, output_channels: int,
               periodic: Sequence[bool], zero_output: bool = False,
               pointwise_input: bool = False, name: str | None = None):
    """pointwise_input: a 1 x 1 input convolution (a per-point mix of many
    input channels, much cheaper than a kernel_size one; the blocks stay
    spatial)."""
    super().__init__(name=name)
    self._config = config
    self._output_channels = output_channels
    self._periodic = tuple(periodic)
    self._zero_output = zero_output
    self._pointwise_input = pointwise_input

  def _conv(self, x, channels, kernel, dilation=1, name=None, zero=False):
    ndim = len(self._periodic)
    pad = dilation * (kernel - 1) // 2
    conv = hk.ConvND(
        num_spatial_dims=ndim, output_channels=channels, kernel_shape=kernel,
        rate=dilation, padding="VALID", name=name,
        w_init=jnp.zeros if zero else None)
    return conv(pad_spatial(x, pad, self._periodic))

  def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
    cfg = self._config
    if x.ndim != len(self._periodic) + 1:
      raise ValueError(f"expected input of rank {len(self._periodic) + 1}"
                       f" ([*spatial, C]), got shape {x.shape}")
    emb = jax.nn.gelu(hk.Linear(cfg.embedding_size, name="embed_1")(embedding))
    emb = jax.nn.gelu(hk.Linear(cfg.embedding_size, name="embed_2")(emb))
    h = self._conv(x, cfg.width, 1 if self._pointwise_input
                   else cfg.kernel_size, name="encode")
    for b in range(cfg.num_blocks):
      dilation = cfg.dilations[b % len(cfg.dilations)]
      film = hk.Linear(2 * cfg.width, name=f"film_{b}")(emb)
      scale, shift = jnp.split(film, 2)
      r = jax.nn.gelu(hk.LayerNorm(-1, True, True, name=f"norm_{b}")(h))
      r = self._conv(r, cfg.width, cfg.kernel_size, dilation, f"conv_{b}a")
      r = jax.nn.gelu(r * (1.0 + scale) + shift)
      r = self._conv(r, cfg.width, cfg.kernel_size, 1, f"conv_{b}b")
      h = h + r
    h = jax.nn.gelu(hk.LayerNorm(-1, True, True, name="norm_out")(h))
    return self._conv(h, self._output_channels, 1, name="decode",
                      zero=self._zero_output)
