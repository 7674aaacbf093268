"""The engine's score-and-report layer: per-lead-time curves and rank
histograms against brute force, the system diagnostics, and the one row and
markdown builder of demo, evaluate, benchmark and pilot."""

import numpy as np
import pytest

from gencast_control.core.config import load_config
from gencast_control.evaluation import (benchmark, diagnostics, engine,
                                        era5_pilot)

RNG = np.random.default_rng(0)
DIAGNOSTIC_KEYS = {"spectrum_error", "physics_error", "diverged", "spectrum",
                   "truth_spectrum"}


def test_per_lead_time_curves_match_brute_force():
  k, m, steps, x, c = 2, 3, 4, 5, 2
  ens = RNG.normal(size=(k, m, steps, x, c))
  y = RNG.normal(size=(k, steps, x, c))
  w = np.linspace(0.5, 1.5, x)
  scores = engine.score(ens, y, weights=w)
  for t in range(steps):
    sq = crps = var = den = 0.0
    for kk in range(k):
      sq_k = den_k = 0.0
      for i in range(x):
        for ch in range(c):
          members, obs = ens[kk, :, t, i, ch], y[kk, t, i, ch]
          pairs = sum(abs(a - b) for a in members for b in members)
          sq += w[i] * (members.mean() - obs)**2
          sq_k += w[i] * (members.mean() - obs)**2
          den_k += w[i]
          crps += w[i] * (np.mean(np.abs(members - obs))
                          - pairs / (2 * m * (m - 1)))
          var += w[i] * members.var(ddof=1)
          den += w[i]
      assert scores["rmse_per_trajectory_time"][kk][t] == pytest.approx(
          np.sqrt(sq_k / den_k), rel=1e-12)
    rmse, spread = np.sqrt(sq / den), np.sqrt(var / den)
    assert scores["rmse_per_time"][t] == pytest.approx(rmse, rel=1e-12)
    assert scores["crps_per_time"][t] == pytest.approx(crps / den, rel=1e-12)
    assert scores["spread_per_time"][t] == pytest.approx(spread, rel=1e-12)
    assert scores["spread_skill_per_time"][t] == pytest.approx(
        np.sqrt((m + 1) / m) * spread / rmse, rel=1e-12)


def test_the_worst_lead_comes_with_its_evidence_over_trajectories():
  """At a lead: the trajectories where the controller is the worse, and the
  paired bootstrap interval of the RMSE ratio, which is a point where every
  trajectory has the same ratio and straddles the pooled ratio otherwise;
  no interval from fewer than 5 trajectories, no evidence without curves."""
  unguided = RNG.uniform(0.5, 1.5, size=(8, 3))
  rows = lambda c: {"controlled": {"rmse_per_trajectory_time": c.tolist()},
                    "unguided": {"rmse_per_trajectory_time":
                                 unguided.tolist()}}
  same_ratio = benchmark.lead_evidence(rows(1.1 * unguided), 2)
  assert same_ratio["above"] == 8 and same_ratio["of"] == 8
  np.testing.assert_allclose(same_ratio["interval"], [1.1, 1.1], rtol=1e-12)
  mixed = unguided * np.array([1.5, 0.6, 1.2, 0.9, 1.0, 0.7, 1.3, 0.8])[:, None]
  evidence = benchmark.lead_evidence(rows(mixed), 1)
  pooled = np.sqrt(np.mean(mixed[:, 1]**2) / np.mean(unguided[:, 1]**2))
  low, high = evidence["interval"]
  assert evidence["above"] == 3 and low < pooled < high and high - low > 0.1
  draws = np.random.default_rng(0).integers(0, 8, (4000, 8))
  brute = [np.sqrt(sum(mixed[i, 1]**2 for i in d)
                   / sum(unguided[i, 1]**2 for i in d)) for d in draws]
  np.testing.assert_allclose(evidence["interval"],
                             np.quantile(brute, [0.05, 0.95]), rtol=1e-12)
  few = benchmark.lead_evidence({m: {"rmse_per_trajectory_time": [[1.0]] * 4}
                                 for m in ("controlled", "unguided")}, 0)
  assert few == {"above": 0, "of": 4, "interval": None}
  assert benchmark.lead_evidence({"controlled": {}, "unguided": {}}, 0) is None


def test_rank_histogram_matches_brute_force_over_the_scored_times():
  k, m, steps, x = 2, 3, 5, 4
  ens = RNG.normal(size=(k, m, steps, x, 1))
  y = RNG.normal(size=(k, steps, x, 1))
  w = np.array([0.5, 1.0, 1.5, 2.0])
  counts = np.zeros(m + 1)
  for kk in range(k):
    for t in range(2, steps):  # burn-in 1: t = 2..T
      for i in range(x):
        counts[np.sum(ens[kk, :, t, i, 0] < y[kk, t, i, 0])] += w[i]
  got = engine.score(ens, y, weights=w, burn_in=1)["rank_histogram"]
  np.testing.assert_allclose(got, counts / counts.sum(), rtol=1e-12)


def _draw(spread: float, m: int = 4, points: int = 20_000):
  """Truth and members around a random centre per point: truth ~ N(mu, 1),
  members ~ N(mu, spread^2); [1, M, T+1, X, 1] with t = 0 the truth."""
  mu = RNG.normal(size=(1, points // 50 + 1, 50, 1)) * 3.0
  y = mu + RNG.normal(size=mu.shape)
  ens = mu[:, None] + spread * RNG.normal(size=(1, m) + mu.shape[1:])
  ens[:, :, 0] = y[:, None, 0]  # the true start, all members tied
  return ens, y


def test_rank_histogram_is_flat_for_a_reliable_ensemble():
  m = 4
  ens, y = _draw(1.0, m)
  freq = np.asarray(engine.score(ens, y)["rank_histogram"])
  n = y[:, 1:].size
  assert freq.shape == (m + 1,) and freq.sum() == pytest.approx(1.0)
  expected = n / (m + 1)
  chi2 = np.sum((freq * n - expected)**2 / expected)
  assert chi2 < 25.0  # chi-square, 4 dof: p ~ 5e-5


def test_rank_histogram_is_u_shaped_for_an_under_dispersive_ensemble():
  freq = np.asarray(engine.score(*_draw(0.3))["rank_histogram"])
  middle = freq[1:-1].mean()
  assert freq[0] > 2 * middle and freq[-1] > 2 * middle
  assert freq[0] + freq[-1] > 0.6


def test_identical_members_tie_without_error():
  # Every member equal: truth equal to them at half the points (ties broken
  # uniformly over 0..M), different at the others (rank 0 or M).
  m, steps, x = 3, 101, 20
  ens = np.zeros((1, m, steps, x, 1))
  y = np.zeros((1, steps, x, 1))
  y[:, :, :10] = RNG.normal(size=(1, steps, 10, 1))
  freq = engine.score(ens, y, burn_in=0)["rank_histogram"]
  assert len(freq) == m + 1 and sum(freq) == pytest.approx(1.0)
  np.testing.assert_allclose(freq[1:3], 0.5 / (m + 1), atol=0.03)


def test_non_finite_ensembles_have_no_rank_histogram():
  ens, y = RNG.normal(size=(1, 3, 4, 6, 1)), RNG.normal(size=(1, 4, 6, 1))
  ens[0, 1, 3, 2] = np.nan
  scores = engine.score(ens, y, system="ks",
                        pde_config=load_config("ks").pde)
  assert scores["rank_histogram"] is None
  assert scores["diverged"] == 1


def test_ks_scores_carry_the_diagnostics_and_era5_scores_skip_them():
  ks = load_config("ks")
  ens = RNG.normal(size=(1, 3, 4, 128, 1))  # the config's 128 points
  y = RNG.normal(size=(1, 4, 128, 1))
  scores = engine.score(ens, y, burn_in=1, system="ks", pde_config=ks.pde)
  assert scores.items() >= diagnostics.scores(ens, y, "ks", ks.pde,
                                              1).items()
  assert len(scores["spectrum"]) == len(diagnostics.wavenumbers(ks)) == 65
  assert diagnostics.physics_metric_name(ks) == "total_variation"
  # A lat/lon system (ERA5, Held-Suarez): no diagnostics, the rest scores.
  lat_lon = RNG.normal(size=(1, 3, 4, 4, 8, 2)), RNG.normal(size=(1, 4, 4, 8, 2))
  era5 = engine.score(*lat_lon, weights=np.ones((4, 8)), channels=("a", "b"),
                      system="era5", pde_config=None)
  assert not DIAGNOSTIC_KEYS & set(era5)
  assert np.isfinite([era5["rmse"], era5["crps"], era5["rmse_a"]]).all()
  with pytest.raises(ValueError, match="no spectrum or physics diagnostic"):
    diagnostics.of_system("era5")


def _scores(rmse, seconds, **extra):
  return {"rmse": rmse, "crps": rmse / 2, "spread_skill": 1.0,
          "rmse_a": rmse, "spread_a": rmse, "seconds": seconds, **extra}


def test_report_rows_and_markdown_ratios_labels_and_gaps():
  regimes = {
      "r": {"controlled": _scores(2.0, 4.0, memory=None, diverged=0),
            "enkf": _scores(3.0, 1.0, diverged=2, memory={
                "total": 3 * 2**20, "argument": 1, "output": 2, "temp": 3})},
      "s": {"enkf": _scores(1.0, 1.0, memory=None),  # no controller
            "letkf": _scores(1.0, 1.0, label="letkf (tuned)")}}
  rows = engine.report_rows(regimes)
  assert [(r["regime"], r["method"]) for r in rows] == [
      ("r", "controlled"), ("r", "enkf"), ("s", "enkf"), ("s", "letkf")]
  assert rows[1]["rmse_vs_controlled"] == 1.5
  assert rows[1]["seconds_vs_controlled"] == 0.25
  assert rows[1]["memory_bytes"] == 3 * 2**20
  assert rows[1]["memory_temp_bytes"] == 3
  assert rows[2]["rmse_vs_controlled"] is None
  text = engine.report_markdown(rows)
  lines = text.splitlines()
  assert lines[0].startswith("| regime | method | RMSE (pooled) | RMSE / ctrl"
                             " | rmse.a | spread.a | time [s] | time / ctrl |")
  assert "spectrum err" not in lines[0]  # no row has it
  assert "| r | enkf (untuned) | 3.0000 | 1.50x | 3.0000 |" in text
  assert lines[-4].startswith("| s | enkf (untuned) | 1.0000 | - |")
  assert lines[-3].startswith("| s | letkf (tuned) | 1.0000 | - |")
  assert lines[3].endswith("| 2 | 3.0 |")  # diverged, XLA mem [MiB]
  assert "Pooled:" in lines[-1]
  assert engine.csv_text(rows).splitlines()[0].startswith(
      "regime,method,label,rmse,rmse_vs_controlled,rmse_a,spread_a,crps")


def test_pilot_table_has_ratios_to_unguided_and_per_channel_columns():
  per_channel = {"t2m": {"rmse": 1.5, "crps": 0.7},
                 "z500": {"rmse": 120.0, "crps": 60.0}}
  rows = {"stations": {
      "unguided": _scores(2.0, 1.0, cpu_seconds=2.0, per_channel=per_channel),
      "controlled": _scores(1.0, 1.5, cpu_seconds=2.0,
                            per_channel=per_channel)}}
  table = era5_pilot.report_rows(rows)
  assert table[1]["seconds_vs_unguided"] == 1.5
  assert table[1]["crps z500"] == 60.0
  text = era5_pilot.markdown_table(rows)
  header = text.splitlines()[0]
  assert "time / unguided" in header and "CPU time / unguided" in header
  assert header.endswith("| RMSE t2m | RMSE z500 |")
  assert "| stations | controlled | 1.0000 | 0.50x |" in text
