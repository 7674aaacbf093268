"""Every ```python block of README.md and docs/*.md runs.

A page's blocks run in order in one namespace, in a temporary folder, with
the network off (a block may use the files an earlier block of its page
wrote). A block right after an HTML comment `<!-- not run: REASON -->` is
left out; REASON says why (network, GenCast's weights, an accelerator), and
such blocks are kept few. Bash blocks are not executed. Relative links
between the pages must point at files that exist.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->\s*$")
MAX_NOT_RUN = 6  # across all pages: keep the exceptions few


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
  """(line, code, reason it is not run or None) of each python block."""
  text = page.read_text()
  out = []
  for match in FENCE.finditer(text):
    if match.group(1) != "python":
      continue
    before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
    reason = NOT_RUN.search(before)
    out.append((text.count("\n", 0, match.start()) + 1, match.group(2),
                reason.group(1) if reason else None))
  return out


def _name(page: Path) -> str:
  return str(page.relative_to(ROOT))


def test_the_pages_have_examples_and_few_exceptions():
  found = {_name(p): blocks(p) for p in PAGES}
  assert any(b for b in found.values()), "no python examples found"
  skipped = [(page, line, why) for page, bs in found.items()
             for line, _, why in bs if why is not None]
  assert len(skipped) <= MAX_NOT_RUN, skipped
  assert (ROOT / "docs").is_dir() and len(PAGES) > 1, "docs/ is missing"


@pytest.fixture
def offline(monkeypatch):
  """No network: an example that opens an internet socket fails."""
  def refuse(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
      raise OSError(f"documentation examples run offline (connect to"
                    f" {address!r})")
    return connect(self, address, *args, **kwargs)
  connect = socket.socket.connect
  monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(why is None for *_, why in blocks(p))],
    ids=_name)
def test_python_examples_run(page, tmp_path, monkeypatch, offline):
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "__docs_example__"}
  for line, code, why in blocks(page):
    if why is not None:
      continue
    try:
      exec(compile(code, f"{_name(page)}:{line}", "exec"), namespace)
    except Exception as error:
      raise AssertionError(f"the example at {_name(page)}:{line} failed:"
                           f" {type(error).__name__}: {error}") from error


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
  missing = []
  for target, _ in LINK.findall(page.read_text()):
    if re.match(r"[a-z]+:", target):
      continue  # https:, mailto:
    path = (page.parent / target).resolve()
    # docs/results/*.md are written by the benchmark and pilot commands.
    if not path.exists() and "docs/results/" not in path.as_posix():
      missing.append(target)
  assert not missing, f"{_name(page)} links to missing files: {missing}"
