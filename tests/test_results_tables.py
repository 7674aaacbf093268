"""The results tables in docs/results/: written by the commands, in the
current header format (evaluation/provenance.py), never retyped."""

import re
from pathlib import Path

import pytest

from gencast_control import cli
from gencast_control.evaluation import provenance

RESULTS = Path(__file__).parents[1] / "docs" / "results"
TABLES = sorted(RESULTS.glob("*.md"))


@pytest.mark.parametrize("path", TABLES, ids=[p.name for p in TABLES])
def test_committed_tables_carry_the_current_header(path):
  try:
    header = provenance.parse_header(path.read_text())
  except ValueError as e:
    pytest.fail(f"docs/results/{path.name}: {e}; regenerate it with the"
                " command that wrote it (its --publish)")
  assert header["format"] == provenance.FORMAT_VERSION
  assert "|" in path.read_text(), f"docs/results/{path.name} has no table"


def test_results_folder_holds_only_generated_tables():
  # Anything else (a hand-written page) belongs in docs/, not here.
  stray = [p.name for p in RESULTS.iterdir()
           if p.suffix != ".md" and not p.name.startswith(".")] \
      if RESULTS.is_dir() else []
  assert not stray, stray


def test_header_round_trip_and_title_hoisting():
  text = provenance.with_header("# My table\n\n| a |\n|---|\n| 1 |\n",
                                ["benchmarks/x.py", "--publish"])
  lines = text.splitlines()
  assert lines[0] == provenance.MARKER.format(
      version=provenance.FORMAT_VERSION)
  header = provenance.parse_header(text)
  assert header["title"] == "My table"
  assert header["Command"] == "`python benchmarks/x.py --publish`"
  assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", header["Date"])
  for package in ("python", "jax", "xarray", "numpy", "dm-haiku", "optax",
                  "gencast-control"):
    assert f"{package} " in header["Versions"]
  assert "CPU cores" in header["Machine"] and "device" in header["Machine"]
  assert text.count("# My table") == 1 and text.endswith("| 1 |\n")


def test_commit_is_short_hash_with_dirty_flag_or_unknown():
  commit = provenance.git_commit()
  assert re.fullmatch(r"[0-9a-f]{4,40}(\+dirty|\+unknown-state)?|unknown",
                      commit)


def test_commit_is_unknown_outside_a_checkout(monkeypatch):
  monkeypatch.setattr(provenance, "checkout_root", lambda: None)
  assert provenance.git_commit() == "unknown"
  with pytest.raises(ValueError, match="git checkout"):
    provenance.results_dir()


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("format 1:", "format 0:"), "format 0"),
    (lambda t: "# no header\n" + t, "does not start"),
    (lambda t: re.sub(r"- Commit: .*\n", "", t), "'Commit' missing"),
    (lambda t: re.sub(r"- Machine: .*\n", "- Machine: \n", t),
     "'Machine' is empty"),
    (lambda t: t.replace(", optax ", ", optix "), "lacks optax"),
    (lambda t: re.sub(r"- Date: .*\n", "- Date: yesterday\n", t), "Date"),
])
def test_parse_header_names_what_is_wrong(mutate, message):
  assert provenance.FORMAT_VERSION == "1"  # the first mutation assumes it
  text = provenance.with_header("| a |\n|---|\n| 1 |\n", "cmd")
  with pytest.raises(ValueError, match=re.escape(message)):
    provenance.parse_header(mutate(text))


def test_publish_refuses_an_existing_table_without_overwrite(tmp_path):
  path = tmp_path / "t.md"
  provenance.check_publish([path])
  provenance.publish(path, "| a |\n|---|\n| 1 |\n", "cmd")
  with pytest.raises(ValueError, match="exists already.*--overwrite"):
    provenance.check_publish([path])
  provenance.check_publish([path], overwrite=True)
  assert provenance.parse_header(path.read_text())["Command"] == "`cmd`"


def test_publish_names():
  assert provenance.slug("benchmark", "ks") == "benchmark_ks"
  assert provenance.slug("pilot", "configs/my model.py") == "pilot_my-model"
  assert provenance.publish_path("evaluate", "ks").parts[-3:] == (
      "docs", "results", "evaluate_ks.md")


def test_cli_refuses_to_publish_over_a_table_before_any_work(
    tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(provenance, "results_dir", lambda: tmp_path)
  (tmp_path / "evaluate_ks.md").write_text("earlier\n")
  assert cli.main(["evaluate", "--config", "ks", "--publish", "--out",
                   str(tmp_path / "out")]) == 2
  assert "evaluate_ks.md exists already" in capsys.readouterr().err
  assert not (tmp_path / "out" / "evaluation.json").exists()
  (tmp_path / "benchmark_ks_cold.md").write_text("earlier\n")
  assert cli.main(["benchmark", "--config", "ks", "--start", "cold",
                   "--publish", "--out", str(tmp_path / "b")]) == 2
  assert "benchmark_ks_cold.md exists already" in capsys.readouterr().err
