"""The project's LETKF against DAPPER's on DAPPER's own bocquet2019 KS setup.

Issue 29, deliverable 1: `baselines.letkf.letkf_analysis` is cross-checked
against DAPPER (github.com/nansencenter/DAPPER), a reference implementation
of classical DA, on its Kuramoto-Sivashinsky twin `dapper.mods.KS.bocquet2019`
(Nx = 128 points, dt = 0.5, an analysis every dko = 2 steps, every point
observed with noise variance 1, X0 = N(x0, 0.001 I)). That module's
"Suggested tuning" table publishes the expected rmse.a of
`LETKF(N=4, loc_rad=15/1.82, infl=1.11, rot=True, taper='GC')`: 0.18.

One truth and one set of observations (DAPPER's `HMM.simulate`, seeded) are
assimilated three times, each cycle starting from the same state of DAPPER's
random generator (so the same initial ensemble and the same rotations):

  DAPPER          DAPPER's own `LETKF` with the table's settings.
  ours (DAPPER's cycle)
                  DAPPER's LETKF cycle step by step (its model `HMM.Dyn`,
                  its post-analysis inflation of the anomalies by `infl`
                  and its random mean-preserving rotation, `post_process`),
                  with the local analyses replaced by `letkf_analysis`
                  (inflation 1 inside it). DAPPER analyses the points in
                  batches of 4 (`nd_Id_localization((Nx,), (4,))`), every
                  point of a batch with the batch's mean distance to each
                  observation and Gaspari-Cohn weights below 1e-3 dropped;
                  the [G, P] localisation here is built the same way from
                  periodic grid distances (and checked equal to DAPPER's).
  ours (project convention)
                  as the project cycles its LETKF (`baselines.perfect_model`):
                  prior multiplicative inflation lambda = infl**2 inside
                  `letkf_analysis` (the same forecast covariance for linear
                  dynamics), every grid point with its own periodic distance,
                  no rotation.

Scores are DAPPER's: at every analysis time the spatial RMSE of the ensemble
mean, rmse = sqrt(mean_x (mean_i E_ix - x_x)^2), and the spread
sqrt(mean_x var_i(E_ix)) (unbiased variance, DAPPER's rmv); rmse.a and
spread.a are their means over the analysis times after the burn-in
(`tseq.masko`: t > BurnIn). DAPPER's run's scores are recomputed from its
stats and compared with its own `avrgs` (rmse.a, rmv.a). DAPPER's analysis
stats, and those of ours in DAPPER's cycle, are taken after its
post-processing (so spread.a includes the posterior inflation); the project
convention's after its analysis (its inflation acts on the prior).

A row passes when its rmse.a is within 10% of the published value. The
published number comes from DAPPER's full chronology (Ko = 2*10^4 analyses,
burn-in 2*10^3 time units); the default here is shorter (--ko, --burn-in) to
finish in a few minutes on 2 cores; the header says which was used.

DAPPER is never a dependency of the project: it lives in a venv of its own
(DAPPER 1.8.x needs Python >= 3.12; `pip install dapper` under 3.11 gives
1.7.1, whose bocquet2019 has the same settings and table), e.g.

    ~/.pyenv/versions/3.12.1/bin/python -m venv /work/venv-dapper
    /work/venv-dapper/bin/pip install dapper==1.8.1 -e /work/main \\
        jax==0.8.1 jaxlib==0.8.1 pytest pytest-timeout
    /work/venv-dapper/bin/python benchmarks/dapper_letkf_check.py \\
        --out results/dapper_letkf_check.md

Exit status 0 when every "ours" row passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# DAPPER: no live plotting, and its data folder (made on import) not in ~.
os.environ.setdefault("DAPPER_LIVEPLOTTING", "false")
os.environ.setdefault("DAPPER_DATA_ROOT", tempfile.gettempdir())

import numpy as np  # noqa: E402

TOLERANCE = 0.10  # |rmse.a / published - 1| at most this to pass
DEFAULT_KO = 10_000  # analyses (DAPPER's bocquet2019: 2*10^4)
DEFAULT_BURN_IN = 1_000.0  # time units = analyses here (DAPPER's: 2*10^3)
DEFAULT_SEED = 3000  # DAPPER's examples' seed
TAPER_CUTOFF = 1e-3  # DAPPER's `inds_and_coeffs` drops weights <= this
GC_SCALE = 1.82  # DAPPER's GC half-width is loc_rad * 1.82 (dist2coeff)


# ---------------------------------------------------------------------------
# DAPPER's setup and its published table


def published_rows() -> list[dict]:
  """The LETKF rows of bocquet2019's "Suggested tuning" table, read from the
  installed DAPPER's source: [{N, loc_rad, infl, rot, taper, rmse_a}]."""
  import inspect

  from dapper.mods.KS import bocquet2019
  pattern = re.compile(
      r"LETKF\(\s*N\s*=\s*(\d+)\s*,\s*loc_rad\s*=\s*([\d.]+)\s*/\s*([\d.]+)"
      r"\s*,\s*infl\s*=\s*([\d.]+)\s*,\s*rot\s*=\s*(\w+)\s*,\s*taper\s*=\s*"
      r"'(\w+)'\s*\)\s*#\s*([\d.]+)")
  rows = [dict(N=int(m[0]), loc_rad=float(m[1]) / float(m[2]),
               loc_rad_text=f"{m[1]}/{m[2]}", infl=float(m[3]),
               rot=m[4] == "True", taper=m[5], rmse_a=float(m[6]))
          for m in pattern.findall(inspect.getsource(bocquet2019))]
  if not rows:
    raise RuntimeError("no LETKF row found in dapper.mods.KS.bocquet2019's"
                       " table; has the installed DAPPER changed it?")
  return rows


def published_row(members: int) -> dict:
  rows = {r["N"]: r for r in published_rows()}
  if members not in rows:
    raise ValueError(f"bocquet2019 publishes LETKF rows for N in"
                     f" {sorted(rows)}, not {members}")
  return rows[members]


def make_hmm(ko: int | None = None, burn_in: float | None = None):
  """A copy of bocquet2019's HMM; ko analyses and the burn-in (time units)
  changed when given. Returns (hmm, the published chronology's fields)."""
  from dapper.mods.KS.bocquet2019 import HMM
  hmm = HMM.copy()
  full = dict(Ko=hmm.tseq.Ko, BurnIn=hmm.tseq.BurnIn, dt=hmm.tseq.dt,
              dko=hmm.tseq.dko)
  if burn_in is not None:
    hmm.tseq.BurnIn = burn_in
  if ko is not None:
    hmm.tseq.Ko = ko  # the setter rebuilds the chronology (keeps BurnIn)
  if burn_in is not None and hmm.tseq.BurnIn != burn_in:
    raise ValueError(f"burn-in {burn_in} is not shorter than the experiment"
                     f" (T = {hmm.tseq.T})")
  if not hmm.tseq.masko.any():
    raise ValueError(f"burn-in {hmm.tseq.BurnIn} leaves no analysis time"
                     f" (T = {hmm.tseq.T})")
  return hmm, full


def dapper_rng():
  from dapper.tools.seeding import rng
  return rng


# ---------------------------------------------------------------------------
# Localisation from periodic grid distances (ours) and DAPPER's batches


def batch_localization(batches, num_points: int, loc_rad: float
                       ) -> np.ndarray:
  """[G, P] weights as DAPPER's LETKF uses them on a periodic 1-D grid with
  every point observed: every point of a batch gets GC(mean distance of the
  batch's points to the observation; half-width loc_rad * 1.82), weights
  <= 1e-3 dropped."""
  from gencast_control.baselines.enkf import gaspari_cohn, periodic_distance
  d = periodic_distance(num_points)  # [state, obs]
  loc = np.zeros((num_points, num_points), np.float32)
  for batch in batches:
    rho = np.asarray(gaspari_cohn(d[batch].mean(0), loc_rad * GC_SCALE))
    loc[batch] = np.where(rho > TAPER_CUTOFF, rho, 0.0)
  return loc


def point_localization(num_points: int, loc_rad: float) -> np.ndarray:
  """[G, P] GC(periodic distance from point g to observed point p)."""
  from gencast_control.baselines.enkf import gaspari_cohn, periodic_distance
  return np.asarray(gaspari_cohn(periodic_distance(num_points),
                                 loc_rad * GC_SCALE))


def dapper_localization(obs, loc_rad: float, taper: str, num_points: int):
  """DAPPER's own (batches, [G, P] weights) of an observation operator."""
  batches, taperer = obs.localizer(loc_rad, "x2y", taper)
  loc = np.zeros((num_points, num_points))
  for batch in batches:
    inds, coeffs = taperer(batch)
    loc[np.ix_(batch, inds)] = coeffs
  return batches, loc


# ---------------------------------------------------------------------------
# The cycles


def _check_setup(hmm):
  if np.any(hmm.Dyn.noise.C != 0):
    raise ValueError("bocquet2019's model is perfect (noise 0); this check"
                     " does not add model noise")
  if hmm.Obs(0).M != hmm.Dyn.M:
    raise ValueError("expected every grid point observed (Id_Obs)")


def _ours_analysis():
  import jax

  from gencast_control.baselines.letkf import letkf_analysis

  @jax.jit
  def analysis(ensemble, predicted, values, noise_std, loc, inflation):
    return letkf_analysis(ensemble[:, :, None], predicted, values, noise_std,
                          loc, inflation)[:, :, 0]

  def run(ensemble, predicted, values, noise_std, loc, inflation):
    return np.asarray(analysis(ensemble, predicted, values, noise_std, loc,
                               inflation), np.float64)
  return run


def _scores(hmm, rmse_t: np.ndarray, spread_t: np.ndarray) -> dict:
  """rmse.a, spread.a and DAPPER's 1-sigma of rmse.a (the standard error of
  the time mean, corrected for the AR(1) autocorrelation of the series)."""
  from dapper.tools.series import mean_with_conf
  mask = hmm.tseq.masko
  return dict(rmse_a=float(rmse_t[mask].mean()),
              rmse_a_sigma=float(mean_with_conf(rmse_t[mask]).prec),
              spread_a=float(spread_t[mask].mean()),
              analyses=int(mask.sum()))


def run_dapper(hmm, xx, yy, rng_state, row: dict) -> dict:
  """DAPPER's LETKF with the published row's settings; its scores
  recomputed from its stats beside its own averages."""
  import dapper.da_methods as da
  dapper_rng().bit_generator.state = rng_state
  xp = da.LETKF(N=row["N"], loc_rad=row["loc_rad"], infl=row["infl"],
                rot=row["rot"], taper=row["taper"])
  start = time.perf_counter()
  xp.assimilate(hmm, xx, yy)
  seconds = time.perf_counter() - start
  err, spread = np.asarray(xp.stats.err.a), np.asarray(xp.stats.spread.a)
  out = _scores(hmm, np.sqrt((err**2).mean(1)), np.sqrt((spread**2).mean(1)))
  xp.stats.average_in_time()
  out.update(seconds=seconds,
             dapper_avrgs_rmse_a=float(xp.avrgs.err.rms.a.val),
             dapper_avrgs_rmv_a=float(xp.avrgs.spread.rms.a.val))
  return out


def run_ours(hmm, xx, yy, rng_state, row: dict, convention: str) -> dict:
  """DAPPER's LETKF cycle with `letkf_analysis` as the analysis (module
  docstring): convention "dapper" (batch localisation, posterior inflation
  and rotation by DAPPER's `post_process`) or "project" (per-point
  localisation, prior inflation infl**2, no rotation)."""
  from dapper.da_methods.ensemble import post_process
  if convention not in ("dapper", "project"):
    raise ValueError(f"convention: 'dapper' or 'project', not {convention!r}")
  _check_setup(hmm)
  analysis = _ours_analysis()
  nx = hmm.Dyn.M
  obs = hmm.Obs(0)
  noise_std = np.sqrt(np.asarray(obs.noise.C.diag, np.float64))
  if convention == "dapper":
    batches, _ = dapper_localization(obs, row["loc_rad"], row["taper"], nx)
    loc, inflation = batch_localization(batches, nx, row["loc_rad"]), 1.0
  else:
    loc, inflation = point_localization(nx, row["loc_rad"]), row["infl"]**2
  dapper_rng().bit_generator.state = rng_state
  ensemble = hmm.X0.sample(row["N"])
  rmse_t = np.full(hmm.tseq.Ko + 1, np.nan)
  spread_t = np.full(hmm.tseq.Ko + 1, np.nan)
  start = time.perf_counter()
  for k, ko, t, dt in hmm.tseq.ticker:
    ensemble = hmm.Dyn(ensemble, t - dt, dt)
    if ko is None:
      continue
    obs = hmm.Obs(ko)
    ensemble = analysis(ensemble, obs(ensemble), yy[ko], noise_std, loc,
                        inflation)
    if convention == "dapper":
      ensemble = post_process(ensemble, row["infl"], row["rot"])
    if not np.all(np.isfinite(ensemble)):
      raise RuntimeError(f"ensemble not finite at analysis {ko}")
    mean = ensemble.mean(0)
    rmse_t[ko] = np.sqrt(np.mean((mean - xx[k])**2))
    spread_t[ko] = np.sqrt(np.mean(ensemble.var(0, ddof=1)))
  out = _scores(hmm, rmse_t, spread_t)
  out["seconds"] = time.perf_counter() - start
  return out


def first_analysis_difference(hmm, xx, yy, row: dict, seed: int) -> dict:
  """One analysis of the same ensemble (the truth at the first observation
  time plus N(0, 1) perturbations, so that the increments are O(1)):
  max |ours - DAPPER's local_analyses| with the batch localisation, and
  max |our localisation - DAPPER's taper weights|."""
  from dapper.da_methods.ensemble import local_analyses
  nx = hmm.Dyn.M
  ko = 0
  k = hmm.tseq.kko[ko]
  ensemble = xx[k] + np.random.default_rng(seed).normal(size=(row["N"], nx))
  obs = hmm.Obs(ko)
  batches, theirs_loc = dapper_localization(obs, row["loc_rad"], row["taper"],
                                            nx)
  ours_loc = batch_localization(batches, nx, row["loc_rad"])
  batch, taperer = obs.localizer(row["loc_rad"], "x2y", row["taper"])
  theirs, _ = local_analyses(ensemble.copy(), obs(ensemble), obs.noise.C,
                             yy[ko], batch, taperer)
  noise_std = np.sqrt(np.asarray(obs.noise.C.diag, np.float64))
  ours = _ours_analysis()(ensemble, obs(ensemble), yy[ko], noise_std,
                          ours_loc, 1.0)
  return dict(analysis=float(np.abs(ours - theirs).max()),
              increment=float(np.abs(theirs - ensemble).max()),
              localization=float(np.abs(ours_loc - theirs_loc).max()))


def check(ko: int | None, burn_in: float | None, members: int, seed: int,
          log=print) -> dict:
  """Everything: the setup, the three runs, the one-analysis comparison."""
  import dapper
  import dapper.tools.progressbar as progressbar
  progressbar.disable_progbar = True

  row = published_row(members)
  hmm, full = make_hmm(ko, burn_in)
  _check_setup(hmm)
  dapper.set_seed(seed)
  xx, yy = hmm.simulate()
  rng_state = dapper_rng().bit_generator.state
  log(f"Ko={hmm.tseq.Ko} BurnIn={hmm.tseq.BurnIn}: one analysis ...")
  first = first_analysis_difference(hmm, xx, yy, row, seed)
  runs = {}
  log("DAPPER's LETKF ...")
  runs["DAPPER LETKF"] = run_dapper(hmm, xx, yy, rng_state, row)
  log(f"  {runs['DAPPER LETKF']}")
  for name, convention in (("ours (DAPPER's cycle)", "dapper"),
                           ("ours (project convention)", "project")):
    log(f"{name} ...")
    runs[name] = run_ours(hmm, xx, yy, rng_state, row, convention)
    log(f"  {runs[name]}")
  return dict(row=row, full=full, runs=runs, first=first, seed=seed,
              tseq=dict(Ko=hmm.tseq.Ko, BurnIn=hmm.tseq.BurnIn,
                        dt=hmm.tseq.dt, dko=hmm.tseq.dko, T=hmm.tseq.T))


# ---------------------------------------------------------------------------
# Report


def passes(rmse_a: float, published: float) -> bool:
  return abs(rmse_a / published - 1.0) <= TOLERANCE


def markdown(result: dict, command: str, total_seconds: float) -> str:
  row, runs, tseq, full = (result["row"], result["runs"], result["tseq"],
                           result["full"])
  published = row["rmse_a"]
  dapper_rmse = runs["DAPPER LETKF"]["rmse_a"]
  import dapper
  from gencast_control.evaluation import provenance
  first = result["first"]
  dapper_run = runs["DAPPER LETKF"]
  lines = provenance.header(
      command, "The project's LETKF against DAPPER on bocquet2019 KS") + [
      f"- dapper {dapper.__version__}",
      f"- setup: `dapper.mods.KS.bocquet2019` (Nx 128, dt {tseq['dt']},"
      f" dko {tseq['dko']}, every point observed, noise variance 1),"
      f" seed {result['seed']}; LETKF N={row['N']},"
      f" loc_rad={row['loc_rad_text']}, infl={row['infl']},"
      f" rot={row['rot']}, taper={row['taper']} (the table's row)",
      f"- run length: Ko = {tseq['Ko']} analyses, burn-in {tseq['BurnIn']:g}"
      f" time units, rmse.a over {dapper_run['analyses']} analyses; "
      + ("the published chronology" if (tseq["Ko"], tseq["BurnIn"]) ==
         (full["Ko"], full["BurnIn"]) else
         f"the published value uses Ko = {full['Ko']}, burn-in"
         f" {full['BurnIn']:g} (shortened to finish in minutes on 2 cores)")
      + f"; total {total_seconds:.0f} s",
      f"- DAPPER's own averages of its run: rmse.a"
      f" {dapper_run['dapper_avrgs_rmse_a']:.4f}, rmv.a"
      f" {dapper_run['dapper_avrgs_rmv_a']:.4f} (recomputed here:"
      f" {dapper_run['rmse_a']:.4f}, {dapper_run['spread_a']:.4f})",
      f"- one analysis of the same ensemble (truth + N(0, 1) perturbations),"
      f" batch localisation:"
      f" max |ours - DAPPER| = {first['analysis']:.1e} (float32) for"
      f" increments up to {first['increment']:.2f}; localisation weights"
      f" max |ours - DAPPER's taper| = {first['localization']:.1e}",
      f"- pass: rmse.a within {TOLERANCE:.0%} of the published value;"
      " 1 sigma: DAPPER's standard error of the time mean"
      " (`series.mean_with_conf`, AR(1)-corrected)",
      "",
      "| method | published rmse.a | measured rmse.a | 1 sigma | spread.a |"
      " ratio / published | ratio / DAPPER measured | within 10% | wall s |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for name, run in runs.items():
    lines.append(
        f"| {name} | {published:.2f} | {run['rmse_a']:.4f} |"
        f" {run['rmse_a_sigma']:.4f} | {run['spread_a']:.4f} |"
        f" {run['rmse_a'] / published:.3f} |"
        f" {run['rmse_a'] / dapper_rmse:.3f} |"
        f" {'PASS' if passes(run['rmse_a'], published) else 'FAIL'} |"
        f" {run['seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str, overwrite: bool) -> None:
  """Writes text to path atomically (core.checkpoint.atomic_write); an
  existing path is refused unless overwrite (FileExistsError)."""
  from gencast_control.core.checkpoint import atomic_write
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
  atomic_write(path, lambda f: f.write(text.encode()))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", help="markdown file for the table")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace an existing --out")
  parser.add_argument("--ko", type=int, default=DEFAULT_KO,
                      help="analyses (bocquet2019: 20000)")
  parser.add_argument("--burn-in", type=float, default=DEFAULT_BURN_IN,
                      help="burn-in in time units (bocquet2019: 2000)")
  parser.add_argument("--members", type=int, default=4,
                      help="the table's row (N = 4, 6 or 16)")
  parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
  args = parser.parse_args(argv)
  if args.out and os.path.exists(args.out) and not args.overwrite:
    parser.error(f"{args.out} exists (--overwrite to replace it)")
  script = (os.path.relpath(sys.argv[0]) if argv is None
            else "benchmarks/dapper_letkf_check.py")
  command = " ".join(shlex.quote(a) for a in
                     [sys.executable, script]
                     + list(sys.argv[1:] if argv is None else argv))
  start = time.perf_counter()
  result = check(args.ko, args.burn_in, args.members, args.seed,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
  text = markdown(result, command, time.perf_counter() - start)
  print(text)
  if args.out:
    write_atomically(args.out, text, args.overwrite)
  published = result["row"]["rmse_a"]
  ours_pass = all(passes(run["rmse_a"], published)
                  for name, run in result["runs"].items()
                  if name.startswith("ours"))
  return 0 if ours_pass else 1


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/dapper_letkf_check.py", main))
