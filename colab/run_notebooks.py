"""Executes the notebooks of colab/ on their offline path and keeps the result.

    python colab/run_notebooks.py                 # every notebook
    python colab/run_notebooks.py quickstart      # colab/quickstart.ipynb only
    /path/to/venv-with-weathernext/bin/python colab/run_notebooks.py gencast

writes colab/executed/NAME.ipynb: the notebook with its outputs (tables,
printed scores, figures as PNG), so a reader sees a result without running
anything. The offline path is the one the test suite runs: after each code
cell tagged "parameters" (papermill's convention) the line `OFFLINE = True`
is inserted; the quickstart has no parameters cell (its default path is
already the small one). A notebook whose metadata lists
`gencast_control.requires` (e.g. DeepMind's GenCast code) needs a Python
where those modules import (`pip install ".[gencast-next]"`); the kernel is
this interpreter's. The notebook runs in a temporary folder (the files it
writes are dropped), and the executed copy is written atomically.
tests/test_notebooks.py uses the same functions and checks that each
executed copy has the code of its notebook.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

COLAB = Path(__file__).resolve().parent
EXECUTED = COLAB / "executed"
OFFLINE_OVERRIDE = "OFFLINE = True  # the offline path (injected by colab/run_notebooks.py)"
HEADER_TAG = "executed-copy-header"


def notebooks() -> list[Path]:
  return sorted(COLAB.glob("*.ipynb"))


def requirements(nb) -> list[str]:
  """Modules a notebook needs beyond the core (its metadata says which)."""
  return list(nb.metadata.get("gencast_control", {}).get("requires", []))


def missing_requirements(nb) -> list[str]:
  missing = []
  for module in requirements(nb):
    try:
      found = importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
      found = False
    if found:  # importable only if DeepMind's code is: try it
      try:
        importlib.import_module(module)
      except ImportError:
        found = False
    if not found:
      missing.append(module)
  return missing


def offline(nb):
  """The notebook with OFFLINE = True set after each parameters cell."""
  cells = []
  for cell in nb.cells:
    cells.append(cell)
    if "parameters" in cell.get("metadata", {}).get("tags", []):
      override = nbformat.v4.new_code_cell(OFFLINE_OVERRIDE)
      override["id"] = f"{cell.get('id', 'cell')}-offline"
      cells.append(override)
  nb.cells = cells
  return nb


def execute(path: Path, workdir: Path, timeout: int = 600):
  """The notebook at `path`, executed on its offline path in `workdir`."""
  nb = offline(nbformat.read(path, as_version=4))
  NotebookClient(nb, timeout=timeout, kernel_name="python3",
                 record_timing=False,
                 resources={"metadata": {"path": str(workdir)}}).execute()
  return nb


def code_sources(nb) -> list[str]:
  """The code cells' sources, without the injected offline lines."""
  return [c.source for c in nb.cells
          if c.cell_type == "code" and c.source != OFFLINE_OVERRIDE]


def write_executed(path: Path, nb) -> Path:
  """Writes the executed copy of colab/NAME.ipynb atomically."""
  import gencast_control
  header = nbformat.v4.new_markdown_cell(
      f"*Executed copy of [`colab/{path.name}`](../{path.name}), offline path"
      f" (`OFFLINE = True` where the notebook has the parameter), written by"
      f" `colab/run_notebooks.py` on {datetime.date.today().isoformat()} with"
      f" gencast-control {gencast_control.__version__}, Python"
      f" {sys.version.split()[0]}. Do not edit: change `colab/{path.name}`"
      f" and rerun `python colab/run_notebooks.py {path.stem}`.*")
  header["id"] = "executed-copy-header"
  header.metadata["tags"] = [HEADER_TAG]
  nb.cells.insert(0, header)
  out = EXECUTED / path.name
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".ipynb.tmp",
                             dir=out.parent)
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      nbformat.write(nb, f)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets
    os.replace(tmp, out)
  except BaseException:
    os.unlink(tmp)
    raise
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("names", nargs="*", help="notebook names (default: all)")
  args = parser.parse_args(argv)
  paths = notebooks()
  if args.names:
    by_name = {p.stem: p for p in paths}
    unknown = [n for n in args.names if n.removesuffix(".ipynb") not in by_name]
    if unknown:
      parser.error(f"no colab/NAME.ipynb for {unknown}; have {sorted(by_name)}")
    paths = [by_name[n.removesuffix(".ipynb")] for n in args.names]
  for path in paths:
    missing = missing_requirements(nbformat.read(path, as_version=4))
    if missing:
      print(f"{path.name}: needs {missing} (DeepMind's GenCast code): run this"
            " script with a Python where gencast-control[gencast-next] is"
            " installed", file=sys.stderr)
      return 1
  for path in paths:
    start = datetime.datetime.now()
    with tempfile.TemporaryDirectory() as workdir:
      nb = execute(path, Path(workdir))
    out = write_executed(path, nb)
    seconds = (datetime.datetime.now() - start).total_seconds()
    print(f"{path.name}: executed in {seconds:.0f} s -> {out.relative_to(COLAB.parent)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
