"""The public API of gencast_control/__init__.py."""

import subprocess
import sys

import pytest

import gencast_control as gc


def test_every_public_name_resolves_to_its_module():
  from gencast_control.core import ardm, assimilation
  from gencast_control.training import controller_training
  for name in gc.__all__:
    assert getattr(gc, name) is not None, name
  assert gc.FrozenARDM is ardm.FrozenARDM
  assert gc.rollout is assimilation.rollout
  assert gc.train_controller is controller_training.train_controller
  with pytest.raises(AttributeError, match="no attribute 'nothing'"):
    gc.nothing  # noqa: B018


def test_importing_the_package_is_light():
  code = "import sys, gencast_control; print('jax' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout.strip()
  assert out == "False"


def test_version_is_the_distributions_and_the_clis(capsys):
  import importlib.metadata
  import re
  import tomllib
  from pathlib import Path

  from gencast_control import cli
  root = Path(__file__).parent.parent
  project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
  assert gc.__version__ == importlib.metadata.version("gencast-control")
  assert gc.__version__ == project["version"]
  # the fallback for an uninstalled source tree repeats pyproject's version
  source = (root / "gencast_control" / "__init__.py").read_text()
  assert re.search(r'__version__ = "([^"]+)"', source)[1] == project["version"]
  with pytest.raises(SystemExit) as exit_:
    cli.main(["--version"])
  assert exit_.value.code == 0
  assert capsys.readouterr().out.strip() == f"gencast-control {gc.__version__}"


def test_license_file_is_apache_2():
  from pathlib import Path
  text = (Path(__file__).parent.parent / "LICENSE").read_text()
  assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_importing_plots_leaves_matplotlib_backend_alone():
  # A notebook's inline backend (or any the user chose) must survive the
  # import: the module must not call matplotlib.use.
  code = ("import matplotlib; before = matplotlib.get_backend();"
          " import gencast_control.evaluation.plots;"
          " print(before, matplotlib.get_backend())")
  import os
  env = dict(os.environ, MPLBACKEND="svg")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, env=env).stdout.split()
  assert out == ["svg", "svg"]
