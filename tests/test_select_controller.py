"""benchmarks/select_controller.py on tiny settings."""

import dataclasses
import pathlib

import pytest

from gencast_control.adapters.grid import load_grid_ardm
from gencast_control.core.controller import load_controller, save_controller
from gencast_control.evaluation import benchmark, provenance
from gencast_control.systems import pipeline

SIZE = ["--trajectories", "1", "--steps", "5", "--members", "2",
        "--regime", "noisy_25pct"]


def test_candidates_are_scored_as_the_validation_benchmark_scores_them(
    benchmark_script, tmp_path):
  ardm_path, controller_path = pipeline.shipped_checkpoints("ks")
  ardm, _ = load_grid_ardm(ardm_path)
  config, params, _ = load_controller(controller_path, ardm)
  perturbed = tmp_path / "perturbed.npz"
  save_controller(perturbed, params, dataclasses.replace(
      config, perturbed_observations=True), ardm)
  select = benchmark_script("select_controller")
  out = tmp_path / "table.md"
  config_file = pathlib.Path(__file__).parents[1] / "configs" / "ks.py"
  assert select.main(  # a config named by its file, as users may
      ["--config", str(config_file), "--candidate", "shipped", "--candidate",
       f"perturbed={perturbed},controller.perturbed_observations=True",
       "--out", str(out)] + SIZE) == 0
  table = out.read_text()
  rows = {tuple(c.strip() for c in line.split("|")[1:4]): line
          for line in table.splitlines() if "| noisy_25pct |" in line}
  assert set(rows) == {(n, s, "noisy_25pct") for n in ("shipped", "perturbed")
                       for s in ("truth", "cold")}
  # The shipped candidate's row is the validation benchmark's.
  direct = benchmark.run_benchmark(
      tmp_path / "direct", ["ks"], methods=("controlled", "unguided"),
      regimes=["noisy_25pct"], size={"num_trajectories": 1, "num_steps": 5,
                                     "ensemble_size": 2},
      split="validation", log=lambda _: None)
  scores = direct["configs"]["ks"]["regimes"]["noisy_25pct"]["controlled"]
  assert f"| {scores['rmse_a']:.4f} | {scores['crps']:.4f} |" in rows[
      ("shipped", "truth", "noisy_25pct")]
  # Perturbed observations change what the controller does.
  assert (rows[("shipped", "truth", "noisy_25pct")].split("|")[4]
          != rows[("perturbed", "truth", "noisy_25pct")].split("|")[4])
  summary = [line for line in table.splitlines()
             if line.endswith(" of 1 |")]
  assert len(summary) == 4  # one per candidate and start
  assert "sha256" in table
  assert (provenance.parse_header(table)["title"]
          == "Controller selection on validation: ks")


@pytest.mark.parametrize("candidate, message", [
    ("perturbed", "give NAME=CHECKPOINT"),
    ("other=missing.npz", "no checkpoint at missing.npz")])
def test_a_bad_candidate_is_refused_before_any_work(benchmark_script, capsys,
                                                    candidate, message):
  select = benchmark_script("select_controller")
  with pytest.raises(SystemExit):
    select.main(["--candidate", candidate])
  assert message in capsys.readouterr().err
