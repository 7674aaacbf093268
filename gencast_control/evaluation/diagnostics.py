"""System diagnostics of ensemble forecasts: spectra, physics, divergence.

Beside the engine's statistical scores, a system of DIAGNOSTICS (by system
name, `systems.registry`; add one to measure a system of yours) is scored
(`scores`) over the scored times t = B+1..T of ensembles x [K, M, T+1,
*spatial, C] against the truth y [K, T+1, *spatial, C]:

  spectrum_error  mean over trajectories, times, channels of
                  1/K' sum_{k>0} |log10 E_ens(k) / E_y(k)|, E_ens the
                  member-averaged energy spectrum (`metrics.spectrum_error`)
  physics_error   relative error |a(x_m) - a(y)| / |a(y)| of a physical
                  diagnostic a, averaged over members, trajectories and
                  times: KS total variation (sharpness), Kolmogorov
                  enstrophy (= that of the dissipation 2 nu Z)
  diverged        members whose spatial RMS exceeds DIVERGENCE_FACTOR x the
                  truth's RMS (or turns non-finite) at some t = 0..T, out
                  of K x M
  spectrum, truth_spectrum
                  E_ens and E_y averaged over trajectories, times and
                  channels, one value per wavenumber (`wavenumbers`)

Systems without an entry (ERA5, Held-Suarez, custom) have none of these.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

import numpy as np

from gencast_control.evaluation import metrics

if TYPE_CHECKING:
  from gencast_control.systems.experiment import ExperimentConfig

DIVERGENCE_FACTOR = 5.0


@dataclasses.dataclass(frozen=True)
class Diagnostics:
  """What is measured of one system's forecasts beyond `engine.score`.

  spectrum(fields, pde_config) -> (k [K], E [..., C, K]): energy spectra of
    fields [..., *spatial, C].
  physics: (name, error(forecast, truth) -> relative error of a physical
    diagnostic, spatial axes removed).
  """
  spectrum: Callable[[np.ndarray, object], tuple[np.ndarray, np.ndarray]]
  physics: tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]


DIAGNOSTICS = {
    "ks": Diagnostics(  # fields [..., X, C]
        lambda f, pde: metrics.energy_spectrum_1d(
            f, axis=-2, domain_length=pde.domain_length),
        ("total_variation",
         lambda f, t: metrics.total_variation_error(f, t, axis=-2))),
    "kolmogorov": Diagnostics(  # fields [..., X, Y, C], 2 pi periodic
        lambda f, pde: metrics.energy_spectrum_2d(
            f, axes=(-3, -2), domain_length=2 * np.pi),
        ("enstrophy",
         lambda f, t: metrics.enstrophy_error(f, t, axes=(-3, -2)))),
}


def of_system(system: str) -> Diagnostics:
  """DIAGNOSTICS[system], a clear error where the system has none."""
  if system not in DIAGNOSTICS:
    raise ValueError(f"no spectrum or physics diagnostic for system"
                     f" {system!r} (DIAGNOSTICS has {', '.join(DIAGNOSTICS)})")
  return DIAGNOSTICS[system]


def wavenumbers(config: ExperimentConfig) -> np.ndarray:
  """The wavenumbers of the system's spectra on the config's grid."""
  zeros = np.zeros(tuple(config.ardm.state_shape[:-1]) + (1,))
  return of_system(config.system).spectrum(zeros, config.pde)[0]


def physics_metric_name(config: ExperimentConfig) -> str:
  return of_system(config.system).physics[0]


def count_diverged(ensemble: np.ndarray, truth: np.ndarray) -> int:
  """Members [K, M, T+1, ...] whose spatial RMS exceeds DIVERGENCE_FACTOR x
  the truth's RMS over the whole run, or is non-finite, at some time."""
  spatial = tuple(range(3, ensemble.ndim))
  size = np.sqrt(np.mean(np.asarray(ensemble, np.float64)**2, axis=spatial))
  limit = DIVERGENCE_FACTOR * np.sqrt(np.mean(np.asarray(truth,
                                                         np.float64)**2))
  bad = ~np.isfinite(size) | (size > limit)
  return int(np.sum(np.any(bad, axis=-1)))


def scores(ensembles: np.ndarray, truth: np.ndarray, system: str | None,
           pde_config, burn_in: int = 0) -> dict:
  """The module docstring's scores of ensembles [K, M, T+1, *spatial, C]
  against truth [K, T+1, ...] over t = burn_in+1..T; {} for a system (or
  None) without DIAGNOSTICS."""
  measure = DIAGNOSTICS.get(system)
  if measure is None:
    return {}
  first = burn_in + 1
  ens = np.moveaxis(np.asarray(ensembles, np.float64)[:, :, first:], 1, 0)
  tru = np.asarray(truth, np.float64)[:, first:]  # ens: [M, K, T', ...]
  physics = measure.physics[1](ens, np.broadcast_to(tru, ens.shape))
  ens_spectrum = measure.spectrum(ens, pde_config)[1].mean(0)  # [K, T', C, k]
  truth_spectrum = measure.spectrum(tru, pde_config)[1]
  return {
      "spectrum_error": float(np.mean(metrics.spectrum_error(
          ens_spectrum, truth_spectrum))),
      "physics_error": float(np.mean(physics)),
      "diverged": count_diverged(ensembles, truth),
      "spectrum": ens_spectrum.mean(axis=(0, 1, 2)).tolist(),
      "truth_spectrum": truth_spectrum.mean(axis=(0, 1, 2)).tolist(),
  }
