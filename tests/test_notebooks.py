"""Executes every notebook in colab/ on its small offline path.

A notebook whose metadata lists `gencast_control.requires` (importable
modules, e.g. DeepMind's GenCast code) is skipped when one is missing. After
a code cell tagged "parameters" (papermill's convention) the line
`OFFLINE = True` is inserted, so notebooks default to their full path for
users and run their offline path here; colab/run_notebooks.py, which writes
the executed copies in colab/executed/, does the same (its functions are
used here).
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

COLAB = Path(__file__).parent.parent / "colab"
_spec = importlib.util.spec_from_file_location(
    "run_notebooks", COLAB / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)


def requirements(path: Path) -> list[str]:
  return run_notebooks.requirements(nbformat.read(path, as_version=4))


NOTEBOOKS = [
    pytest.param(path, id=path.name, marks=[pytest.mark.gencast] if any(
        "gencast" in m for m in requirements(path)) else [])
    for path in run_notebooks.notebooks()
]


def test_there_are_notebooks():
  assert {p.name for p in run_notebooks.notebooks()} >= {
      "quickstart.ipynb", "gencast.ipynb"}


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
                        " 'gencast-control[gencast-next]')",
                        exc_type=ImportError)
  run_notebooks.execute(path, tmp_path)


@pytest.mark.parametrize("path", run_notebooks.notebooks(), ids=lambda p: p.name)
def test_executed_copy_is_current_and_has_outputs(path):
  """colab/executed/NAME.ipynb holds NAME's code (rerun
  `python colab/run_notebooks.py NAME` after editing it) and its outputs,
  a figure included, with no errors."""
  copy = run_notebooks.EXECUTED / path.name
  assert copy.exists(), f"run python colab/run_notebooks.py {path.stem}"
  executed = nbformat.read(copy, as_version=4)
  source = nbformat.read(path, as_version=4)
  assert (run_notebooks.code_sources(executed)
          == run_notebooks.code_sources(source)), (
              f"{copy} is stale: rerun python colab/run_notebooks.py {path.stem}")
  outputs = [o for c in executed.cells if c.cell_type == "code"
             for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any("image/png" in o.get("data", {}) for o in outputs), (
      f"{copy} has no figure")


def test_notebooks_install_from_the_wheel_on_colab_only():
  """The first code cell installs the wheel (not editable) on Colab only,
  the GenCast notebook with the gencast-next extra and accelerator jax."""
  for path in run_notebooks.notebooks():
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first, path.name
    assert "files.upload()" in first and '"-e"' not in text, path.name
    assert "os.kill(os.getpid(), 9)" in text, path.name
  gencast = (COLAB / "gencast.ipynb").read_text()
  assert "[gencast-next]" in gencast and "jax[cuda12]" in gencast
  assert "[gencast]" not in gencast
