"""Executes every notebook in colab/ on its small offline path.

A notebook whose metadata lists `gencast_control.requires` (importable
modules, e.g. DeepMind's graphcast) is skipped when one is missing. After a
code cell tagged "parameters" (papermill's convention) the test inserts
`OFFLINE = True`, so notebooks default to their full path for users and run
their offline path here.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

OFFLINE_OVERRIDE = "OFFLINE = True  # injected by tests/test_notebooks.py"


def requirements(path: Path) -> list[str]:
  """Modules a notebook needs beyond the core (its metadata says which)."""
  nb = nbformat.read(path, as_version=4)
  return list(nb.metadata.get("gencast_control", {}).get("requires", []))


NOTEBOOKS = [
    pytest.param(path, id=path.name, marks=[pytest.mark.gencast] if any(
        "gencast" in m for m in requirements(path)) else [])
    for path in sorted((Path(__file__).parent.parent / "colab").glob("*.ipynb"))
]


def offline(nb):
  """The notebook with OFFLINE = True set after each parameters cell."""
  cells = []
  for cell in nb.cells:
    cells.append(cell)
    if "parameters" in cell.get("metadata", {}).get("tags", []):
      cells.append(nbformat.v4.new_code_cell(OFFLINE_OVERRIDE))
  nb.cells = cells
  return nb


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_runs(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  for cell in nb.cells:
    assert not cell.get("outputs"), f"{path.name}: outputs must be stripped"
    assert cell.get("execution_count") is None, (
        f"{path.name}: execution counts must be stripped")
  for module in requirements(path):
    pytest.importorskip(module, reason=f"{path.name} needs {module}, i.e."
                        " DeepMind's GenCast code (pip install"
                        " 'gencast-control[gencast]' or '[gencast-next]')",
                        exc_type=ImportError)
  NotebookClient(offline(nb), timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
