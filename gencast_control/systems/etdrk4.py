"""Exponential time differencing RK4 (ETDRK4) for u_t = L u + N(u), L diagonal.

Cox & Matthews 2002 (J. Comput. Phys. 176, 430), with the phi-functions
evaluated by the contour-integral mean of Kassam & Trefethen 2005 (SIAM J.
Sci. Comput. 26, 1214, eq. 2.5): with z = h L and the mean <.> over z + r_j,
r_j = exp(i pi (j - 1/2) / M) on the unit circle,

    Q  = h <(e^{z/2} - 1) / z>,
    f1 = h <(-4 - z + e^z (4 - 3 z + z^2)) / z^3>,
    f2 = h <(2 + z + e^z (z - 2)) / z^3>,
    f3 = h <(-4 - 3 z - z^2 + e^z (4 - z)) / z^3>,

and one step

    a = E2 v + Q N(v),  b = E2 v + Q N(a),  c = E2 a + Q (2 N(b) - N(v)),
    v' = E v + f1 N(v) + 2 f2 (N(a) + N(b)) + f3 N(c),

with E = e^z, E2 = e^{z/2}. Shared by the spectral solvers of systems/ks.py and
systems/kolmogorov.py.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

CONTOUR_POINTS = 32  # Kassam & Trefethen's M


class Coefficients(NamedTuple):
  """E, E2, Q, f1, f2, f3 of one step of size h, per spectral mode."""
  e: np.ndarray
  e2: np.ndarray
  q: np.ndarray
  f1: np.ndarray
  f2: np.ndarray
  f3: np.ndarray


def coefficients(linear: np.ndarray, dt: float) -> Coefficients:
  """The coefficients of L = `linear` (any shape) and step h = dt, in float64."""
  lin = np.asarray(linear, np.float64)
  r = np.exp(1j * np.pi * (np.arange(1, CONTOUR_POINTS + 1) - 0.5)
             / CONTOUR_POINTS)
  z = dt * lin[..., None] + r
  ez = np.exp(z)
  mean = lambda a: dt * np.real(np.mean(a, axis=-1))
  return Coefficients(
      e=np.exp(dt * lin), e2=np.exp(dt * lin / 2),
      q=mean((np.exp(z / 2) - 1) / z),
      f1=mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3),
      f2=mean((2 + z + ez * (z - 2)) / z**3),
      f3=mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3))


def step(c: Coefficients, nonlinear: Callable, v):
  """One ETDRK4 step of the spectral state v (traceable; c as JAX arrays)."""
  nv = nonlinear(v)
  a = c.e2 * v + c.q * nv
  na = nonlinear(a)
  b = c.e2 * v + c.q * na
  nb = nonlinear(b)
  cc = c.e2 * a + c.q * (2 * nb - nv)
  nc = nonlinear(cc)
  return c.e * v + c.f1 * nv + 2 * c.f2 * (na + nb) + c.f3 * nc
