"""benchmarks/goals.py: the goals page copies the tables' goal lines."""

from pathlib import Path

from gencast_control.evaluation import provenance

RESULTS = Path(__file__).parents[1] / "docs" / "results"

COLD_LINES = [
    "Controller rmse.a below the best tuned LETKF/LETKS's: 1 of 2 regimes"
    " (a).",
    "Controller rmse.a / best tuned classical rmse.a: a 0.50x (letkf),"
    " b 1.50x (letks).",
    "Controller RMSE <= the unguided forecast's at every lead time: 2 of 2"
    " regimes (a, b).",
    "Best tuned same-model filter rmse.a / best tuned classical rmse.a (the"
    " filters on the ARDM against the filters on the true solver): a 2.00x"
    " (letks_ardm / letks).",
]


def write_table(path: Path, body: str, command: str) -> None:
  path.write_text(provenance.with_header(body, command))


def test_goal_lines_are_copied_verbatim_under_their_goal(benchmark_script,
                                                         tmp_path):
  goals = benchmark_script("goals")
  write_table(tmp_path / "benchmark_ks_cold.md",
              "# t\n\n| a |\n|---|\n| 1 |\n\nPooled: ...\n"
              + "\n".join(COLD_LINES) + "\n", "gencast-control benchmark")
  write_table(tmp_path / "benchmark_ks_cold_8traj.md", "# t\n\n| a |\n",
              "gencast-control benchmark --trajectories 8")
  write_table(tmp_path / "frontier_ks_cold.md",
              "# f\n\n## a\n\n| x |\n\n- dps: never reaches the"
              " controller's rmse.a 0.2 (best 0.7 at 50 sub-steps).\n",
              "python benchmarks/frontier.py")
  page = goals.markdown(tmp_path)
  cold = page.split("## Cold start")[1].split("## True start")[0]
  assert all(f"- {COLD_LINES[i]}" in cold for i in (0, 1, 3))
  assert "8traj" not in cold  # the classical goals: main tables only
  assert "## True start" in page and "benchmark_ks_cold" not in page.split(
      "## True start")[1].split("## No harm")[0]
  no_harm = page.split("## No harm")[1].split("## Calibration")[0]
  assert f"- {COLD_LINES[2]}" in no_harm
  assert "[benchmark_ks_cold_8traj.md](benchmark_ks_cold_8traj.md)" in no_harm
  assert "- (no goal line in this table)" in no_harm
  cost = page.split("## Cost")[1]
  assert "- a: dps: never reaches the controller's rmse.a 0.2" in cost
  assert "(`python benchmarks/frontier.py`)" in cost
  assert "- - " not in page and "Commit" not in page  # not the headers


def test_the_published_goals_page_is_current(benchmark_script):
  """Rerun `python benchmarks/goals.py --publish --overwrite` after any
  table it reads was rerun."""
  goals = benchmark_script("goals")
  published = (RESULTS / "goals.md").read_text()
  body = goals.markdown(RESULTS).split("\n", 1)[1]  # the title is hoisted
  assert provenance.table_body(published).strip() == body.strip()
