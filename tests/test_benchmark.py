"""`gencast-control benchmark` on a tiny KS model: outputs, metrics, errors."""

import csv
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencast_control import cli

from gencast_control.evaluation import benchmark, diagnostics
from gencast_control.adapters.grid import save_grid_ardm
from gencast_control.baselines.filters import assimilate_filter
from gencast_control.core.config import load_config
from gencast_control.core.controller import (ControllerConfig, init_controller,
                                             save_controller)
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import sample_observations
from gencast_control.systems import truth as held_out
from tests.conftest import TINY_ARDM

CONTROLLER = ControllerConfig(horizon=2, network=ConvNetConfig(
    width=8, num_blocks=1, kernel_size=3, dilations=(1,), embedding_size=8))


def _overrides(prefix: str, section) -> list[str]:
  """--set flags that make a config section equal `section`."""
  out = []
  for field in dataclasses.fields(section):
    value = getattr(section, field.name)
    if dataclasses.is_dataclass(value):
      out += _overrides(f"{prefix}.{field.name}", value)
    else:
      out += ["--set", f"{prefix}.{field.name}={value!r}"]
  return out


# The checkpoints below fix the ardm and controller sections.
TINY = (["--set", "pde.num_points=32", "--set", "pde.domain_length=22.0",
         "--set", "data.burn_in_steps=20"]
        + _overrides("ardm", TINY_ARDM) + _overrides("controller", CONTROLLER))
SIZE = ["--trajectories", "1", "--steps", "3", "--members", "3"]
REGIMES = ("random_25pct", "stations_10pct")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_ardm):
  """The tiny ARDM and a (randomly perturbed, so u != 0) tiny controller."""
  folder = tmp_path_factory.mktemp("checkpoints")
  save_grid_ardm(folder / "ks_ardm.npz", tiny_ardm)
  config = CONTROLLER
  params = init_controller(config, tiny_ardm, jax.random.PRNGKey(0))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(tree, [
      p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  save_controller(folder / "ks_controller.npz", params, config, tiny_ardm)
  return folder


@pytest.fixture(scope="module")
def run(checkpoints, tmp_path_factory):
  out = tmp_path_factory.mktemp("benchmark")
  args = (["benchmark", "--config", "ks", "--checkpoints", str(checkpoints),
           "--out", str(out), "--regime", *REGIMES] + TINY + SIZE)
  assert cli.main(args) == 0
  return out


def test_writes_every_method_and_regime(run):
  rows = list(csv.DictReader((run / "benchmark.csv").open()))
  cells = {(r["regime"], r["method"]) for r in rows}
  assert cells == {(g, m) for g in REGIMES for m in benchmark.METHODS}
  for r in rows:
    for column in ("rmse", "crps", "spread_skill", "spectrum_error",
                   "physics_error", "seconds"):
      assert np.isfinite(float(r[column])) and float(r[column]) >= 0, r
    assert r["physics_metric"] == "total_variation"
    if r["method"] == "controlled":
      assert float(r["rmse_vs_controlled"]) == 1.0
  results = json.loads((run / "benchmark.json").read_text())
  ks = results["configs"]["ks"]
  assert ks["setup"]["sampler_substeps"] == 4  # the tiny ARDM's sampler
  assert set(ks["regimes"]) == set(REGIMES)
  memory = ks["regimes"]["random_25pct"]["dps"]["memory"]
  if memory is not None:  # XLA's estimate, where the backend provides it
    assert memory["total"] == (memory["argument"] + memory["output"]
                               + memory["temp"]) > 0
  markdown = (run / "benchmark.md").read_text()
  assert markdown.count("| random_25pct |") == len(benchmark.METHODS)
  assert "Controller lowest RMSE of all methods:" in markdown
  goals = ks["goals"]
  rows = ks["regimes"]
  best = {r for r in REGIMES if min(
      ("controlled", "unguided", "dps", "sda", "repaint"),
      key=lambda m: rows[r][m]["crps"]) == "controlled"}
  assert set(goals["controller_best_diffusion_crps"]["regimes"]) == best
  for r in REGIMES:
    assert goals["rmse_vs_enkf"][r] == pytest.approx(
        rows[r]["controlled"]["rmse"] / rows[r]["enkf"]["rmse"])
  assert "| random_25pct | enkf (untuned) |" in markdown
  assert "rmse.a" in markdown and "RMSE (pooled)" in markdown
  for r in REGIMES:  # one trajectory: the count, no interval
    t, _ = goals["worst_lead_vs_unguided"][r]
    evidence = goals["worst_lead_evidence"][r]
    assert evidence == benchmark.lead_evidence(rows[r], t)
    assert evidence["of"] == 1 and evidence["interval"] is None
    assert f"at t = {t} (higher in {evidence['above']} of 1 trajectories)" in (
        markdown)
  for method in rows["random_25pct"].values():
    histogram = method["rank_histogram"]  # M + 1 = 4 bins
    assert len(histogram) == 4 and sum(histogram) == pytest.approx(1.0)
  for name in ("ks_spectra.png", "ks_fields.png", "ks_rank_histogram.png",
               "ks_rmse_vs_time_random_25pct.png"):
    assert (run / name).stat().st_size > 5_000, name


def test_table_matches_a_brute_force_recomputation(run):
  """One cell (stations_10pct, enkf: its program does not depend on the ARDM
  object, so it is not compiled again) recomputed from scratch: the same
  truth, the documented observation and ensemble keys, scores by loops."""
  rows = list(csv.DictReader((run / "benchmark.csv").open()))
  row = next(r for r in rows
             if r["regime"] == "stations_10pct" and r["method"] == "enkf")
  config = load_config("ks", TINY[1::2] + [
      "assimilation.num_trajectories=1", "assimilation.num_steps=3",
      "assimilation.ensemble_size=3"])
  truth = held_out.test_trajectories(config)[0]  # [T + 1, 32, 1]
  key = jax.random.PRNGKey(1)
  obs = sample_observations(config.regime("stations_10pct"),
                            jax.random.fold_in(key, 0), jnp.asarray(truth))
  ens = np.asarray(assimilate_filter(
      "enkf", truth[:1], obs, 3, jax.random.fold_in(key, 1), 3,
      pde_config=config.pde), np.float64)[:, 1:, :, 0]  # [M, T, X]
  y = truth[1:, :, 0].astype(np.float64)
  m = ens.shape[0]
  mean = ens.mean(0)
  rmse = np.sqrt(np.mean((mean - y)**2))
  crps = np.mean([np.mean(np.abs(ens[i] - y)) for i in range(m)]) - sum(
      np.mean(np.abs(ens[i] - ens[j])) for i in range(m)
      for j in range(m)) / (2 * m * (m - 1))
  spread = np.mean(ens.var(0, ddof=1))
  ssr = np.sqrt((m + 1) / m * spread / np.mean((mean - y)**2))
  tv = lambda u: np.abs(np.roll(u, -1, -1) - u).sum(-1)
  physics = np.mean([np.abs(tv(ens[i]) - tv(y)) / tv(y) for i in range(m)])
  n = y.shape[-1]  # energy spectra by the definition, then the log ratio
  spectrum = lambda u: np.stack(
      [np.abs(np.sum(u * np.exp(-2j * np.pi * k * np.arange(n) / n), -1)
              / n)**2 * (1.0 if k in (0, n // 2) else 2.0) / 2
       for k in range(n // 2 + 1)], -1)
  e_ens = np.mean([spectrum(ens[i]) for i in range(m)], 0)[:, 1:]
  e_truth = spectrum(y)[:, 1:]
  floor = 1e-12 * spectrum(y).max(-1, keepdims=True) + np.finfo(
      np.float32).tiny  # metrics.spectrum_error's floor for empty modes
  spectrum_error = np.mean(np.abs(np.log10(np.maximum(e_ens, floor)
                                           / np.maximum(e_truth, floor))))
  assert float(row["spectrum_error"]) == pytest.approx(spectrum_error,
                                                        rel=1e-3)
  assert float(row["rmse"]) == pytest.approx(rmse, rel=1e-4)
  assert float(row["crps"]) == pytest.approx(crps, rel=1e-4)
  assert float(row["spread_skill"]) == pytest.approx(ssr, rel=1e-4)
  assert float(row["physics_error"]) == pytest.approx(physics, rel=1e-4)
  controlled = next(r for r in rows if r["regime"] == "stations_10pct"
                    and r["method"] == "controlled")
  assert float(row["rmse_vs_controlled"]) == pytest.approx(
      rmse / float(controlled["rmse"]), rel=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--method", "kalman"], "unknown method"),
    (["--regime", "nope"], "unknown observation regime 'nope'"),
    (["--config", "nope"], "unknown config 'nope'"),
    (["--members", "1"], "ensemble_size must be an integer >= 2"),
])
def test_bad_input_gives_a_clear_error(checkpoints, tmp_path, capsys, args,
                                       message):
  base = ["benchmark", "--checkpoints", str(checkpoints), "--out",
          str(tmp_path)] + TINY + SIZE
  if "--config" not in args:
    base += ["--config", "ks"]
  assert cli.main(base + args) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "benchmark.csv").exists()


def test_missing_checkpoints_skip_the_config_with_a_note(tmp_path, capsys):
  with pytest.raises(ValueError, match="no config with checkpoints"):
    benchmark.run_benchmark(tmp_path, ["ks"], checkpoints_dir=tmp_path,
                            log=print)
  assert "note: skipping ks" in capsys.readouterr().out


def test_cold_start_runs_from_climatological_states(checkpoints, tmp_path):
  args = (["benchmark", "--config", "ks", "--checkpoints", str(checkpoints),
           "--out", str(tmp_path), "--regime", "random_25pct", "--method",
           "controlled", "unguided", "enkf", "--start", "cold", "--burn-in",
           "1"] + TINY + SIZE)
  assert cli.main(args) == 0
  results = json.loads((tmp_path / "benchmark.json").read_text())
  setup = results["configs"]["ks"]["setup"]
  assert (setup["start"], setup["burn_in"]) == ("cold", 1)
  rows = results["configs"]["ks"]["regimes"]["random_25pct"]
  assert len(rows["controlled"]["control_size"]) == 4  # one per sub-step
  assert all(np.isfinite(rows["controlled"]["control_size"]))
  assert all(rows[m]["diverged"] == 0 for m in rows)
  # Members start apart from each other and from the truth.
  config = load_config("ks", TINY[1::2])
  initial = held_out.climatological_histories(config, 3, 1)
  truth = held_out.test_trajectories(config)[0]
  assert initial.shape == (3, 1, 32, 1)
  assert np.abs(initial[0] - initial[1]).max() > 0.5
  assert np.abs(initial[:, 0] - truth[0]).max() > 0.5
  assert "start: cold; scores over t = 2..3" in (
      tmp_path / "benchmark.md").read_text()


def test_divergence_counts_members_far_outside_the_truths_range():
  truth = np.ones((1, 5, 8, 1))
  ensemble = np.ones((1, 3, 5, 8, 1))
  ensemble[0, 1, 3] = 100.0  # one member blows up at t = 3
  ensemble[0, 2, 4, 0] = np.nan
  assert diagnostics.count_diverged(ensemble, truth) == 2
  assert diagnostics.count_diverged(np.ones((1, 3, 5, 8, 1)), truth) == 0


def test_validation_split_scores_against_the_validation_draws(
    checkpoints, tmp_path, monkeypatch):
  drawn = []
  for name in ("test_trajectories", "validation_trajectories"):
    original = getattr(benchmark, name)
    monkeypatch.setattr(benchmark, name, lambda *a, f=original, n=name:
                        drawn.append(n) or f(*a))
  args = (["benchmark", "--config", "ks", "--checkpoints", str(checkpoints),
           "--out", str(tmp_path), "--regime", "random_25pct", "--method",
           "controlled", "unguided", "--split", "validation"] + TINY + SIZE)
  assert cli.main(args) == 0
  assert drawn == ["validation_trajectories"]
  results = json.loads((tmp_path / "benchmark.json").read_text())
  assert results["configs"]["ks"]["setup"]["split"] == "validation"
  assert "1 validation-split trajectories" in (
      tmp_path / "benchmark.md").read_text()
  assert benchmark.publish_paths(["ks"], [], "quick", "cold", "validation")[
      "ks"].name == "benchmark_ks_cold_validation.md"


def test_goals_compare_with_the_perfect_model_and_the_same_model_filters():
  def scores(rmse_a, tuned=None):
    row = {"rmse": rmse_a, "rmse_a": rmse_a, "crps": rmse_a,
           "spread_skill": 1.0, "cpu_seconds": 1.0,
           "rmse_per_time": [0.0, rmse_a, rmse_a]}
    return row if tuned is None else {**row, "tuned": tuned}

  regimes = {
      "a": {"controlled": scores(0.3), "unguided": scores(0.9),
            "letkf": scores(0.1, True), "letks": scores(0.2, True),
            "letkf_ardm": scores(0.6, True), "letks_ardm": scores(0.4, True)},
      "b": {"controlled": scores(0.3), "unguided": scores(0.9),
            "letkf": scores(0.5, True), "letks": scores(0.26, True),
            "letkf_ardm": scores(0.25, True),
            "letks_ardm": scores(0.1, False)}}  # untuned: not the best
  goals = benchmark.goal_summary(regimes)
  assert goals["rmse_a_vs_best_classical"] == {
      "a": {"method": "letkf", "ratio": pytest.approx(3.0)},
      "b": {"method": "letks", "ratio": pytest.approx(0.3 / 0.26)}}
  assert goals["controller_beats_classical"]["regimes"] == []
  assert goals["controller_within_1.2x_classical"]["regimes"] == ["b"]
  assert goals["rmse_a_vs_best_same_model"] == {
      "a": {"method": "letks_ardm", "ratio": pytest.approx(0.75)},
      "b": {"method": "letkf_ardm", "ratio": pytest.approx(1.2)}}
  assert goals["controller_beats_same_model"] == {
      "regimes": ["a"], "count": 1, "of": 2}
  assert goals["same_model_vs_classical"] == {
      "a": {"method": "letks_ardm / letkf", "ratio": pytest.approx(4.0)},
      "b": {"method": "letkf_ardm / letks",
            "ratio": pytest.approx(0.25 / 0.26)}}
  # without the same-model filters there is no such goal
  for rows in regimes.values():
    del rows["letkf_ardm"], rows["letks_ardm"]
  assert not {"controller_beats_same_model", "same_model_vs_classical"} & set(
      benchmark.goal_summary(regimes))
