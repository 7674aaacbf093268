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
