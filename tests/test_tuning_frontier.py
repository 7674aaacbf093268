"""benchmarks/tune_filters.py and benchmarks/frontier.py on tiny settings."""

import json

import numpy as np
import pytest

from gencast_control.baselines import filter_tuning
from gencast_control.core.config import load_config
from gencast_control.evaluation import benchmark, provenance


def test_tuning_records_the_grid_and_the_benchmark_reads_it(benchmark_script,
                                                             tmp_path, capsys,
                                                             monkeypatch):
  out = tmp_path / "tuned.json"
  argv = ["--config", "ks", "--regime", "random_25pct", "--method", "letks",
          "--start", "truth", "--radius", "4", "8", "--inflation", "1.05",
          "--extend", "0", "--out", str(out)]
  tune = benchmark_script("tune_filters")
  assert tune.main(argv) == 0
  key = filter_tuning.entry_key("letks", "truth", 4, 50, "random_25pct")
  entry = json.loads(out.read_text())["configs"]["ks"][key]
  assert len(entry["grid"]) == 2
  assert entry["best"]["rmse_a"] == min(s["rmse_a"] for s in entry["grid"])
  assert entry["options"] == {"lag": 3, "initial_std": 0.1}
  assert entry["validation"] == {"num_trajectories": 2, "num_steps": 50,
                                 "ensemble_size": 4, "mode": "quick"}
  # finished tuning is kept unless --replace
  assert tune.main(argv) == 0
  assert "tuned already" in capsys.readouterr().out
  # the benchmark runs the tuned setting only where it was tuned for it
  monkeypatch.setattr(filter_tuning, "TUNED_FILE", out)
  config = load_config("ks", [])
  options = benchmark.baseline_options(config, horizon=4)
  tuned, ok = benchmark.filter_options(config, "letks", options, "truth", 4,
                                       50, "random_25pct")
  assert ok and tuned["localization_radius"] == entry["best"][
      "localization_radius"]
  for other in (("cold", 4, 50), ("truth", 8, 50), ("truth", 4, 100)):
    assert not benchmark.filter_options(config, "letks", options, *other,
                                        "random_25pct")[1]
  lag2 = benchmark.baseline_options(config, horizon=3)  # another lag
  assert not benchmark.filter_options(config, "letks", lag2, "truth", 4, 50,
                                      "random_25pct")[1]
  assert benchmark.filter_label("letks", tuned, True) == (
      "letks (tuned, lag 3)")


def bowl(radius_best, inflation_best, calls):
  """A synthetic rmse.a with its minimum at (radius_best, inflation_best)."""
  def evaluate(radius, inflation):
    calls.append((radius, inflation))
    return {"rmse_a": float((np.log2(radius / radius_best)) ** 2
                            + (inflation - inflation_best) ** 2)}
  return evaluate


def test_grid_search_follows_the_minimum_past_the_grid():
  calls = []
  search = filter_tuning.grid_search(bowl(24.0, 1.9, calls), (1, 2, 4),
                                     (1.02, 1.05), radius_max=128,
                                     max_extensions=6)
  best = search["best"]
  assert (best["localization_radius"], best["inflation"]) == (32, 1.8)
  assert search["at_edge"] == []
  assert len(calls) == len(set(calls)) == len(search["grid"])
  assert min(search["grid"], key=lambda s: s["rmse_a"]) == best
  # stopped early, it says which ends the best point still lies on
  short = filter_tuning.grid_search(bowl(24.0, 1.9, []), (1, 2, 4),
                                    (1.02, 1.05), radius_max=128,
                                    max_extensions=1)
  assert short["at_edge"] == [["localization_radius", "max"],
                              ["inflation", "max"]]
  # points already scored are reused, not rerun: only their best, once,
  # to check that it still scores what was recorded
  again = []
  resumed = filter_tuning.grid_search(bowl(24.0, 1.9, again), (), (),
                                      radius_max=128, max_extensions=6,
                                      scored=short["grid"])
  assert resumed["best"] == best
  best_short = short["best"]
  assert set(again) & {(s["localization_radius"], s["inflation"])
                       for s in short["grid"]} == {
      (best_short["localization_radius"], best_short["inflation"])}
  assert len(again) == len(set(again))
  # ... and refuses to extend a grid whose scores no longer reproduce
  with pytest.raises(ValueError, match="code or the data changed"):
    filter_tuning.grid_search(bowl(20.0, 1.9, []), (), (), radius_max=128,
                              scored=short["grid"])


def test_grid_search_stops_at_the_axes_natural_ends():
  from_above = filter_tuning.grid_search(bowl(0.01, 1.2, []), (1.5, 3),
                                         (1.2,), radius_max=64)
  assert from_above["best"]["localization_radius"] == 0.5  # not 0.75
  search = filter_tuning.grid_search(bowl(0.01, 0.5, []), (1, 2),
                                     (1.02, 1.05), radius_max=64)
  assert (search["best"]["localization_radius"],
          search["best"]["inflation"]) == (0.5, 1.0)
  assert search["at_edge"] == []
  wide = filter_tuning.grid_search(bowl(1000.0, 1.05, []), (4, 8), (1.05,),
                                   radius_max=20)
  assert max(s["localization_radius"] for s in wide["grid"]) == 20
  assert wide["at_edge"] == []
  with pytest.raises(ValueError, match="diverged at every grid point"):
    filter_tuning.grid_search(lambda r, i: {"rmse_a": None}, (1,), (1.0,),
                              radius_max=8)


def test_refine_extends_a_recorded_grid_and_reuses_its_scores(
    benchmark_script, tmp_path):
  out = tmp_path / "tuned.json"
  tune = benchmark_script("tune_filters")
  argv = ["--config", "ks", "--regime", "random_25pct", "--method", "letkf",
          "--start", "truth", "--out", str(out)]
  assert tune.main(argv + ["--radius", "4", "8", "--inflation", "1.0",
                           "--extend", "0"]) == 0
  key = filter_tuning.entry_key("letkf", "truth", 4, 50, "random_25pct")
  first = json.loads(out.read_text())["configs"]["ks"][key]
  assert first["at_edge"]  # 4 or 8 is an end; 1.0 is a natural one only
  assert tune.main(argv + ["--refine", "--extend", "1"]) == 0
  refined = json.loads(out.read_text())["configs"]["ks"][key]
  assert len(refined["grid"]) == 6  # one more radius, inflation 1.05
  assert refined["reused"]["points"] == 2
  assert all(p in refined["grid"] for p in first["grid"])
  assert refined["best"]["rmse_a"] <= first["best"]["rmse_a"]


def test_same_model_tuning_holds_for_its_ardm_only(benchmark_script,
                                                  tmp_path, monkeypatch,
                                                  tiny_ardm):
  out = tmp_path / "tuned.json"
  tune = benchmark_script("tune_filters")
  assert tune.main(["--config", "ks", "--regime", "random_25pct", "--method",
                    "letkf_ardm", "--start", "truth", "--radius", "8",
                    "--inflation", "1.2", "--extend", "0", "--out", str(out)]) == 0
  key = filter_tuning.entry_key("letkf_ardm", "truth", 4, 50, "random_25pct")
  entry = json.loads(out.read_text())["configs"]["ks"][key]
  config = load_config("ks", [])
  shipped = benchmark.load_models(
      config, *benchmark.pipeline.shipped_checkpoints("ks")).ardm
  assert entry["options"] == {"lag": None, "initial_std": 0.1,
                              "model": shipped.fingerprint}
  assert 0 < entry["best"]["rmse_a"] < 1.0  # the unguided ARDM: 0.5
  monkeypatch.setattr(filter_tuning, "TUNED_FILE", out)
  for ardm, found in ((shipped, True), (tiny_ardm, False)):
    options = benchmark.baseline_options(config, 4, ardm)
    assert benchmark.filter_options(config, "letkf_ardm", options, "truth",
                                    4, 50, "random_25pct")[1] == found


def test_tuning_is_labelled_with_the_commit_it_started_from(
    benchmark_script, tmp_path, monkeypatch):
  """The run writes the tracked tuned file itself; that must not make its
  own entries and published table read "+dirty"."""
  commits = iter(["abc1234"])
  monkeypatch.setattr(provenance, "git_commit",
                      lambda: next(commits, "abc1234+dirty"))
  monkeypatch.setattr(provenance, "publish_path",
                      lambda *parts: tmp_path / ("_".join(parts) + ".md"))
  tune = benchmark_script("tune_filters")
  out = tmp_path / "tuned.json"
  assert tune.main(["--config", "ks", "--regime", "random_25pct", "--method",
                    "letkf", "--start", "truth", "--radius", "4",
                    "--inflation", "1.05", "--extend", "0", "--out", str(out),
                    "--publish"]) == 0
  entry, = json.loads(out.read_text())["configs"]["ks"].values()
  assert entry["commit"] == "abc1234"
  header = provenance.parse_header(
      (tmp_path / "tuning_filters_ks.md").read_text())
  assert header["Commit"] == "abc1234"


def test_frontier_prints_the_cost_to_reach_the_controller(benchmark_script,
                                                          tmp_path):
  frontier = benchmark_script("frontier")
  argv = ["--config", "ks", "--regime", "random_25pct", "--method", "repaint",
          "--method", "letkf", "--substeps", "2", "3", "--members", "4",
          "--trajectories", "1", "--steps", "6", "--ensemble-size", "2",
          "--rounds", "2", "--out", str(tmp_path)]
  assert frontier.main(argv) == 0
  results = json.loads((tmp_path / "frontier_ks_cold.json").read_text())
  rows = results["regimes"]["random_25pct"]
  assert [(r["method"], r["budget"]) for r in rows] == [
      ("controlled", "6 sub-steps"), ("repaint", "2 sub-steps"),
      ("repaint", "3 sub-steps"), ("letkf", "4 members")]
  assert all(r["cpu_seconds"] > 0 for r in rows)
  ctrl = rows[0]["rmse_a"]
  for method, match in results["cost_to_match"]["random_25pct"].items():
    mine = [r for r in rows if r["method"] == method]
    reached = [r for r in mine if r["rmse_a"] <= ctrl]
    assert (match["budget"] is None) == (not reached)
    assert match["max_cost_ratio"] == pytest.approx(
        max(r["cpu_seconds"] for r in mine) / rows[0]["cpu_seconds"])
  markdown = (tmp_path / "frontier_ks_cold.md").read_text()
  assert "letkf (untuned) | 4 members" in markdown
  assert (tmp_path / "frontier_ks_cold.png").exists()


def test_frontier_refuses_an_unknown_method(benchmark_script):
  with pytest.raises(ValueError, match="unknown method 'kalman'"):
    benchmark_script("frontier").main(["--method", "kalman", "--steps", "2",
                             "--trajectories", "1"])
