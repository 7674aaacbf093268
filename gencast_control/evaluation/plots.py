"""Figures of assimilation results (matplotlib, written as PNG).

Every figure is written atomically (`save_figure`): to a temporary file in
the target folder, then renamed into place, so a failed or interrupted
write never leaves a truncated image or replaces a good one.

Importing this module leaves matplotlib's backend alone (a notebook keeps
its inline backend); without a display matplotlib itself falls back to Agg,
and figures are written with savefig, which needs no display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from gencast_control.core.checkpoint import atomic_write


def save_figure(fig, path, dpi: int = 100) -> Path:
  """Writes `fig` to `path` atomically (format from the suffix, PNG by
  default) and closes it."""
  path = Path(path)
  fmt = path.suffix.lstrip(".").lower() or "png"
  try:
    return atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=fmt))
  finally:
    plt.close(fig)


def plot_space_time(ds: xr.Dataset, variable: str, path) -> Path:
  """Truth / observations / unguided / assimilated space-time panels (1-D)."""
  truth = ds[f"{variable}_truth"].values
  observed = ds[f"{variable}_observed"].values
  unguided = ds[f"{variable}_unguided"].mean("sample").values
  controlled = ds[f"{variable}_controlled"].mean("sample").values
  vmax = float(np.nanmax(np.abs(truth)))
  panels = [("truth", truth), ("observations", observed),
            ("unguided forecast (ens. mean)", unguided),
            ("assimilated (ens. mean)", controlled),
            ("|forecast - truth|", np.abs(unguided - truth)),
            ("|assimilated - truth|", np.abs(controlled - truth))]
  fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 4.2),
                           sharey=True, constrained_layout=True)
  for ax, (title, data) in zip(axes, panels):
    is_error = title.startswith("|")
    ax.imshow(data, aspect="auto", origin="lower", interpolation="nearest",
              cmap="magma" if is_error else "RdBu_r",
              vmin=0 if is_error else -vmax, vmax=vmax)
    if title == "observations":
      ax.set_facecolor("0.85")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (grid index)")
  axes[0].set_ylabel("time step")
  fig.suptitle(f"{ds.attrs.get('system', '')}: regime "
               f"{ds.attrs.get('regime', '')}")
  return save_figure(fig, path, dpi=110)


def plot_snapshots(ds: xr.Dataset, variable: str, path,
                   times=None) -> Path:
  """Truth / observations / unguided / assimilated snapshots of a 2-D field.

  times: time indices (rows); default the first step, the middle and the end.
  """
  if times is None:
    times = (1, ds.sizes["time"] // 2, -1)
  names = ["truth", "observed", "unguided", "controlled"]
  fig, axes = plt.subplots(len(times), 4, figsize=(12, 3 * len(times)),
                           constrained_layout=True, squeeze=False)
  for row, t in enumerate(times):
    for col, name in enumerate(names):
      da = ds[f"{variable}_{name}"]
      if "sample" in da.dims:
        da = da.mean("sample")
      field = da.isel(time=t).values
      vmax = float(np.nanmax(np.abs(ds[f"{variable}_truth"].isel(time=t))))
      axes[row, col].imshow(field.T, origin="lower", cmap="RdBu_r",
                            vmin=-vmax, vmax=vmax)
      axes[row, col].set_title(f"{name}, t={ds.time.values[t]}", fontsize=9)
      axes[row, col].set_xticks([])
      axes[row, col].set_yticks([])
  return save_figure(fig, path, dpi=100)


def plot_assimilation(ds: xr.Dataset, variable: str, path) -> Path:
  """The picture of one assimilation (`forecasts.result_dataset`) for any
  system: space-time panels on a 1-D grid, snapshots on a 2-D one."""
  spatial = ds[f"{variable}_truth"].ndim - 1  # dims (time, *spatial)
  plot = plot_space_time if spatial == 1 else plot_snapshots
  return plot(ds, variable, path)


def plot_error_vs_time(curves: dict[str, np.ndarray], path,
                       title: str = "") -> Path:
  """RMSE against time step, one line per method."""
  fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
  for name, curve in curves.items():
    ax.plot(np.arange(len(curve)), curve, label=name)
  ax.set_xlabel("time step")
  ax.set_ylabel("RMSE")
  ax.set_yscale("log")
  ax.set_title(title)
  ax.legend()
  return save_figure(fig, path, dpi=110)


def plot_spectra(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                 path, title: str = "") -> Path:
  """Energy spectra E(k) on log-log axes: one panel per key of `panels`,
  one line per (name -> (wavenumbers, E)) inside it; the k = 0 mode is
  left out."""
  fig, axes = _panel_grid(len(panels))
  for ax, (panel, lines) in zip(axes.ravel(), panels.items()):
    for name, (k, e) in lines.items():
      ax.loglog(np.asarray(k)[1:], np.maximum(np.asarray(e)[1:], 1e-12),
                label=name, color="k" if name == "truth" else None,
                lw=2 if name == "truth" else 1)
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel("wavenumber")
  return _finish_panels(fig, axes, len(panels), "E(k)", title, path)


def plot_rank_histograms(panels: dict[str, dict[str, np.ndarray]], path,
                         title: str = "") -> Path:
  """Rank histograms: one panel per key of `panels`, one step line per
  (method -> frequencies [M+1] of the truth's rank 0..M) inside it, and the
  flat 1/(M+1) of a reliable ensemble dashed."""
  fig, axes = _panel_grid(len(panels))
  for ax, (panel, lines) in zip(axes.ravel(), panels.items()):
    for name, freq in lines.items():
      freq = np.asarray(freq)
      ax.stairs(freq, np.arange(len(freq) + 1) - 0.5, label=name)
    if lines:
      ax.axhline(1.0 / len(freq), color="k", ls="--", lw=1)
      ax.set_xticks(np.arange(len(freq)))
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel("rank of the truth")
  return _finish_panels(fig, axes, len(panels), "frequency", title, path)


def _panel_grid(count: int):
  """(figure, axes [rows, cols]) of `count` small panels, 3 per row."""
  cols = min(3, count)
  rows = -(-count // cols)
  return plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows),
                      constrained_layout=True, squeeze=False)


def _finish_panels(fig, axes, count: int, ylabel: str, title: str,
                   path) -> Path:
  """Hides the unused panels, labels the first, saves the figure."""
  for ax in axes.ravel()[count:]:
    ax.axis("off")
  axes[0, 0].set_ylabel(ylabel)
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(title)
  return save_figure(fig, path, dpi=100)


def plot_fields(panels: dict[str, np.ndarray], path, title: str = "",
                columns: int = 8) -> Path:
  """One image per panel, rows drawn bottom-up: [time, x] space-time fields
  (1-D systems) or [y, x] snapshots (2-D, pass field.T). Panels named "|...|"
  are errors (magma from 0); the others share the symmetric colour scale of
  the first one; NaN (unobserved) shows grey. `columns` panels per row."""
  fields = {k: np.asarray(v) for k, v in panels.items()}
  signed = [v for k, v in fields.items() if not k.startswith("|")]
  vmax = float(np.nanmax(np.abs(signed[0]))) if signed else 1.0
  emax = max([float(np.nanmax(v)) for k, v in fields.items()
              if k.startswith("|")] or [1.0])
  cols = min(columns, len(fields))
  rows = -(-len(fields) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 3.0 * rows),
                           constrained_layout=True, squeeze=False)
  for ax in axes.ravel()[len(fields):]:
    ax.axis("off")
  for ax, (name, data) in zip(axes.ravel(), fields.items()):
    is_error = name.startswith("|")
    ax.imshow(data, aspect="auto", origin="lower", interpolation="nearest",
              cmap="magma" if is_error else "RdBu_r",
              vmin=0 if is_error else -vmax, vmax=emax if is_error else vmax)
    ax.set_facecolor("0.85")
    ax.set_title(name, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title)
  return save_figure(fig, path, dpi=100)


def plot_analysis(analysis: xr.Dataset, observations, path) -> Path:
  """Observations against the analysis (ensemble mean and spread).

  1-D grids: space-time panels with the observations marked; 2-D grids:
  maps at the last observed time. `observations` is an api.ObservationSet.
  """
  variable = observations.variables[0]
  mean = analysis[variable].mean("sample").values
  spread = analysis[variable].std("sample").values
  observed = np.where(np.asarray(observations.stream.mask)[..., 0] > 0,
                      np.asarray(observations.stream.values)[..., 0], np.nan)
  vmax = float(np.nanmax(np.abs(mean)))
  if mean.ndim == 2:
    panels = [("observations (on the grid)", observed),
              ("analysis (ens. mean)", mean), ("analysis spread", spread)]
  else:
    t = int(np.flatnonzero(np.isfinite(observed).any(
        axis=tuple(range(1, observed.ndim))))[-1])
    panels = [(f"observations, step {t}", observed[t]),
              (f"analysis (ens. mean), step {t}", mean[t]),
              (f"analysis spread, step {t}", spread[t])]
  fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.2),
                           constrained_layout=True)
  for ax, (title, data) in zip(axes, panels):
    is_spread = "spread" in title
    image = ax.imshow(data, aspect="auto", origin="lower",
                      interpolation="nearest",
                      cmap="magma" if is_spread else "RdBu_r",
                      vmin=0 if is_spread else -vmax,
                      vmax=None if is_spread else vmax)
    if title.startswith("observations"):
      ax.set_facecolor("0.85")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
  if mean.ndim == 2:
    axes[0].set_ylabel("time step")
    for ax in axes:
      ax.set_xlabel(f"{observations.spatial_dims[0]} (grid index)")
  fig.suptitle(f"{variable}: {analysis.attrs.get('method', '')} analysis")
  return save_figure(fig, path, dpi=110)
