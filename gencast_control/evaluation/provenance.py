"""Where a results table came from: the header of every markdown table that
a benchmark, pilot or evaluation command writes.

A table is the output of the command that measured it, never retyped. Its
header names that command, the date, the machine, the versions and the
commit, and a format version, so that a test
(tests/test_results_tables.py) finds every committed table in docs/results/
that an older format wrote, or that someone edited into shape:

    <!-- gencast-control results table, format 1: written by the command below; rerun it to update, do not edit -->

    # TITLE

    - Command: `gencast-control benchmark --config ks --publish`
    - Date: 2026-12-08 10:15 UTC
    - Machine: Linux x86_64, 2 CPU cores (AMD EPYC ...), device cpu (cpu) x1
    - Versions: python 3.12.3, jax 0.10.2, xarray ..., numpy ..., dm-haiku ..., optax ..., gencast-control ...
    - Commit: 4d389cc+dirty

    (the table)

The commit is `git rev-parse --short HEAD` of the checkout the package runs
from ("unknown" for an installed package), with "+dirty" when tracked files
other than docs/results/ differ from it. Bump FORMAT_VERSION whenever the
header changes: the test then asks for every committed table to be
regenerated.

Publishing (`--publish` of the commands and of the benchmarks/ scripts)
writes the table, with this header, to docs/results/NAME.md of the checkout
as well; an existing file is replaced only with --overwrite, and the write is
atomic (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

FORMAT_VERSION = "1"
MARKER = ("<!-- gencast-control results table, format {version}: written by"
          " the command below; rerun it to update, do not edit -->")
FIELDS = ("Command", "Date", "Machine", "Versions", "Commit")
PACKAGES = ("jax", "xarray", "numpy", "dm-haiku", "optax", "gencast-control")
RESULTS = Path("docs") / "results"
_MARKER_RE = re.compile(re.escape(MARKER).replace(
    re.escape("{version}"), r"(?P<version>[^:\s]+)"))


def checkout_root() -> Path | None:
  """The root of the git checkout this package runs from, None for an
  installed package."""
  root = Path(__file__).resolve().parents[2]
  return root if (root / ".git").exists() else None


def _git(root: Path, *args: str) -> str | None:
  try:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True,
                          text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str:
  """`git rev-parse --short HEAD` of the checkout, plus "+dirty" when a
  tracked file outside docs/results/ has changes; "unknown" outside a
  checkout or without git."""
  root = checkout_root()
  commit = root and _git(root, "rev-parse", "--short", "HEAD")
  if not commit:
    return "unknown"
  changes = _git(root, "status", "--porcelain", "--untracked-files=no", "--",
                 ".", f":(exclude){RESULTS.as_posix()}")
  if changes is None:
    return f"{commit}+unknown-state"
  return commit + ("+dirty" if changes else "")


def command_line(command: str | Sequence[str] | None = None) -> str:
  """The command as one shell line. A sequence is argv (of a script: its
  path is shown as `python PATH`, relative to the checkout; of an entry
  point: its name); None is this process's sys.argv."""
  if isinstance(command, str):
    return command
  argv = list(sys.argv if command is None else command)
  if argv and argv[0].endswith(".py"):
    script = Path(argv[0]).resolve()
    root = checkout_root()
    if root is not None and script.is_relative_to(root):
      script = script.relative_to(root)
    argv = ["python", script.as_posix()] + argv[1:]
  elif argv:
    argv[0] = Path(argv[0]).name  # an entry point: gencast-control
  return shlex.join(argv)


def _cpu_model() -> str | None:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def machine() -> str:
  """Platform, CPU cores (those this process may use) and model, and the
  accelerator (JAX's first device and the device count)."""
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count()
  model = _cpu_model()
  text = (f"{platform.system()} {platform.machine()}, {cores} CPU cores"
          + (f" ({model})" if model else ""))
  try:
    import jax
    devices = jax.devices()
    text += (f", device {devices[0].platform} ({devices[0].device_kind})"
             f" x{len(devices)}")
  except Exception as e:  # noqa: BLE001 - no backend: say so
    text += f", device unknown ({type(e).__name__})"
  return text


def versions() -> str:
  """python and the packages that decide the numbers."""
  parts = [f"python {platform.python_version()}"]
  for name in PACKAGES:
    try:
      parts.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      parts.append(f"{name} not installed")
  return ", ".join(parts)


def header(command: str | Sequence[str] | None = None,
           title: str | None = None, commit: str | None = None) -> list[str]:
  """The header's markdown lines (module docstring), ending with a blank
  line; command as in `command_line`; commit: `git_commit()` unless given
  (a command that writes tracked files itself, e.g. the filters' tuning,
  takes it before it writes)."""
  lines = [MARKER.format(version=FORMAT_VERSION), ""]
  if title:
    lines += [f"# {title}", ""]
  fields = {"Command": f"`{command_line(command)}`",
            "Date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "Machine": machine(), "Versions": versions(),
            "Commit": commit or git_commit()}
  return lines + [f"- {name}: {fields[name]}" for name in FIELDS] + [""]


def with_header(markdown: str, command: str | Sequence[str] | None = None,
                title: str | None = None, commit: str | None = None) -> str:
  """The header, then `markdown`. A markdown whose first line is a `# `
  heading gives the title (unless `title`), shown above the header's
  fields."""
  body = markdown.strip("\n")
  first, _, rest = body.partition("\n")
  if first.startswith("# "):
    title = title or first[2:].strip()
    body = rest.strip("\n")
  return "\n".join(header(command, title, commit)) + "\n" + body + "\n"


def parse_header(text: str) -> dict[str, str]:
  """{format, title, Command, Date, ...} of a table's header.

  Raises ValueError naming what is wrong: no header, another format
  version, a missing or empty field.
  """
  return _read_header(text)[0]


def table_body(text: str) -> str:
  """What follows a table's header (checked as `parse_header` does)."""
  lines, end = text.splitlines(), _read_header(text)[1]
  return "\n".join(lines[end:]).strip("\n") + "\n"


def _read_header(text: str) -> tuple[dict[str, str], int]:
  """parse_header's fields and the index of the first line after them."""
  lines = text.splitlines()
  match = _MARKER_RE.fullmatch(lines[0].strip()) if lines else None
  if match is None:
    raise ValueError("does not start with the results-table header line"
                     f" {MARKER.format(version=FORMAT_VERSION)!r}")
  out = {"format": match["version"], "title": None}
  if match["version"] != FORMAT_VERSION:
    raise ValueError(f"header format {match['version']}, the current one is"
                     f" {FORMAT_VERSION}: rerun the command in its header")
  i = 1
  while i < len(lines) and not lines[i].strip():
    i += 1
  if i < len(lines) and lines[i].startswith("# "):
    out["title"] = lines[i][2:].strip()
    i += 1
    while i < len(lines) and not lines[i].strip():
      i += 1
  for name in FIELDS:
    prefix = f"- {name}: "
    if i >= len(lines) or not lines[i].startswith(prefix):
      found = lines[i] if i < len(lines) else "the end of the file"
      raise ValueError(f"header field {name!r} missing (expected"
                       f" {prefix!r}, found {found!r})")
    value = lines[i][len(prefix):].strip()
    if not value:
      raise ValueError(f"header field {name!r} is empty")
    out[name] = value
    i += 1
  if not (out["Command"].startswith("`") and out["Command"].endswith("`")
          and len(out["Command"]) > 2):
    raise ValueError(f"header field 'Command' is not one `command line`:"
                     f" {out['Command']!r}")
  if not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", out["Date"]):
    raise ValueError(f"header field 'Date' is not YYYY-MM-DD HH:MM UTC:"
                     f" {out['Date']!r}")
  missing = [p for p in ("python",) + PACKAGES
             if not re.search(rf"(^|, ){re.escape(p)} ", out["Versions"])]
  if missing:
    raise ValueError(f"header field 'Versions' lacks {', '.join(missing)}")
  if not re.fullmatch(r"([0-9a-f]{4,40}(\+dirty|\+unknown-state)?|unknown)",
                      out["Commit"]):
    raise ValueError(f"header field 'Commit' is not a commit:"
                     f" {out['Commit']!r}")
  return out, i


def results_dir() -> Path:
  """docs/results/ of the checkout; a ValueError for an installed package
  (it has no docs/ to publish into)."""
  root = checkout_root()
  if root is None:
    raise ValueError("--publish writes into docs/results/ of a"
                     " gencast-control git checkout; this one runs from"
                     f" {Path(__file__).resolve().parents[1]}, an installed"
                     " package (run it from a clone)")
  return root / RESULTS


def slug(*parts: str) -> str:
  """The file stem of a published table: parts joined by "_", each reduced
  to letters, digits, "_", "-" and "." (a config path gives its stem)."""
  clean = []
  for part in parts:
    part = str(part)
    if part.endswith(".py"):
      part = Path(part).stem
    clean.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", part).strip("-") or "x")
  return "_".join(clean)


def publish_path(*parts: str) -> Path:
  """docs/results/<slug(parts)>.md of the checkout."""
  return results_dir() / f"{slug(*parts)}.md"


def add_publish_argument(parser, name: str) -> None:
  """--publish on an argparse parser: also write the table to
  docs/results/NAME.md (`name` may describe several, e.g. "benchmark_CONFIG
  (one per config)")."""
  parser.add_argument("--publish", action="store_true",
                      help=f"also write the markdown table, under its"
                      f" provenance header (command, date, machine, versions,"
                      f" commit), to docs/results/{name}.md of this checkout;"
                      " an existing table is replaced only with --overwrite")


def add_overwrite_argument(parser, what: str = "the published table of an"
                           " earlier run") -> None:
  """--overwrite on an argparse parser: replace `what` instead of refusing
  before any work."""
  parser.add_argument("--overwrite", action="store_true",
                      help=f"replace {what}; without it the command refuses"
                      " before any work when they exist")


def check_publish(paths: Sequence[Path], overwrite: bool = False,
                  overwrite_hint: str = "--overwrite") -> None:
  """Fails before any work when a table to publish exists (unless
  `overwrite`) or cannot be written (checkpoint.check_output)."""
  from gencast_control.core.checkpoint import check_output
  for path in paths:
    check_output(path, "file", flag="--publish", overwrite=overwrite,
                 overwrite_hint=overwrite_hint)


def publish(path, markdown: str, command: str | Sequence[str] | None = None,
            title: str | None = None, commit: str | None = None) -> Path:
  """Writes `with_header(markdown, command, title, commit)` to `path`
  atomically."""
  from gencast_control.core.checkpoint import atomic_write
  text = with_header(markdown, command, title, commit)
  return atomic_write(path, lambda f: f.write(text.encode()))


def write_table(markdown: str, command: str, out,
                publish_to: Path | None = None) -> None:
  """A script's table under the header: to `out`, printed, and, with
  `publish_to`, published there too (a benchmark script's last step; one
  header, so both copies name the same date and commit)."""
  from gencast_control.core.checkpoint import atomic_write
  body = with_header(markdown, command)
  write = lambda f: f.write(body.encode())
  atomic_write(out, write)
  print(body)
  if publish_to is not None:
    print("wrote", atomic_write(publish_to, write))


def file_digest(path) -> str:
  """The first 12 hex digits of a file's SHA-256 (a checkpoint named in a
  table's setup)."""
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
