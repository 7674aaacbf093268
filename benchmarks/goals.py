"""Collects issue 29's goal lines from the published tables into one page.

`gencast-control benchmark` writes, under each table, lines that count the
regimes where the controller meets a goal and give the ratios behind them;
`benchmarks/frontier.py` writes what each baseline needs to reach the
controller. This script copies those lines, verbatim and grouped by goal,
with a link to the table (and its command) each comes from, into
docs/results/goals.md (--publish), which the README's goals table links.
Nothing is measured or retyped here: rerun the commands of the tables, then
this.

Usage:
    python benchmarks/goals.py --publish --overwrite
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from gencast_control.evaluation import provenance

# The quick-mode tables and their larger samples (_8traj...); not the
# long-rollout table (_500steps), which states no goal.
BENCHMARK_TABLE = re.compile(
    r"benchmark_(ks|kolmogorov)(_cold)?(?:_(\d+)traj)?\.md")
CLASSICAL = ("Controller rmse.a below the best tuned LETKF/LETKS's:",
             "Controller rmse.a within 1.2x the best tuned LETKF/LETKS's:",
             "Controller rmse.a / best tuned classical rmse.a:",
             "Controller rmse.a below the best tuned LETKF/LETKS's on the"
             " same ARDM:",
             "Controller rmse.a / best tuned same-model filter rmse.a:",
             "Best tuned same-model filter rmse.a / best tuned classical"
             " rmse.a")

# (anchor heading, the goal as the README states it, which tables: "cold",
#  "true", "any" start or "frontier", the prefixes of the lines to copy)
GOALS = (
    ("Cold start", "from a cold start the controller's rmse.a is below the"
     " tuned LETKF's and LETKS's in every regime", "cold", CLASSICAL),
    ("True start", "from the true state the controller's rmse.a is within"
     " 1.2x of the best classical method's in every regime, and below it in"
     " at least half", "true", CLASSICAL),
    ("No harm", "the controller's RMSE is never above the unguided"
     " forecast's at any lead time", "any",
     ("Controller RMSE <= the unguided forecast's at every lead time:",
      "Worst lead time, controller RMSE / unguided RMSE:")),
    ("Calibration", "spread/skill (pooled) in [0.7, 1.3] in at least 6 of 8"
     " regimes", "any", ("Controller spread/skill in [0.7, 1.3]:",)),
    ("Cost", "every diffusion baseline needs at least 10x the controller's"
     " cost to reach its rmse.a", "frontier", ("- ",)),
)


def tables(results: Path, kind: str) -> list[Path]:
  """The published tables a goal is measured on, main tables first."""
  if kind == "frontier":
    return sorted(results.glob("frontier_*.md"),
                  key=lambda p: ("kolmogorov" in p.name, p.name))
  found = []
  for path in results.glob("benchmark_*.md"):
    match = BENCHMARK_TABLE.fullmatch(path.name)
    if match and (kind == "any" or (  # the classical goals: main tables
        match[3] is None and kind == ("cold" if match[2] else "true"))):
      found.append(((match[1] == "kolmogorov", bool(match[2]),
                     int(match[3] or 0)), path))
  return [path for _, path in sorted(found)]


def goal_lines(text: str, prefixes) -> list[str]:
  """The lines of a table's text after its header that start with one of
  `prefixes`, in the table's order; a list item ("- ...", the frontier's
  per-baseline lines) counts under a "## regime" heading only, and keeps
  it."""
  lines, regime = [], None
  for line in provenance.table_body(text).splitlines():
    if line.startswith("## "):
      regime = line[3:].strip()
    elif line.startswith(tuple(prefixes)):
      if line.startswith("- "):
        if regime:
          lines.append(f"{regime}: {line[2:]}")
      else:
        lines.append(line)
  return lines


def markdown(results: Path) -> str:
  out = ["# Issue 29's goals, as the published tables measure them", "",
         "Each line is copied verbatim from the table it links (rerun the"
         " table's command to update it, then this page's). The README"
         " states which goals are met and why the others are not.", "",
         "| goal | tables |", "|---|---|"]
  sections = []
  for heading, goal, kind, prefixes in GOALS:
    paths = tables(results, kind)
    out.append(f"| [{goal}](#{heading.lower().replace(' ', '-')}) |"
               f" {len(paths)} |")
    sections += ["", f"## {heading}", "", f"Goal: {goal}."]
    for path in paths:
      text = path.read_text()
      command = provenance.parse_header(text)["Command"]
      sections += ["", f"[{path.name}]({path.name}) ({command}):", ""]
      sections += [f"- {line}" for line in goal_lines(text, prefixes)] or [
          "- (no goal line in this table)"]
  return "\n".join(out + sections) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  provenance.add_publish_argument(parser, "goals")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  results = provenance.results_dir()
  text = markdown(results)
  command = " ".join(["python", "benchmarks/goals.py"]
                     + list(sys.argv[1:] if argv is None else argv))
  if args.publish:
    path = provenance.publish_path("goals")
    provenance.check_publish([path], args.overwrite)
    print(f"wrote {provenance.publish(path, text, command)}")
  else:
    print(text)
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/goals.py", main))
