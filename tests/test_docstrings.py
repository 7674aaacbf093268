"""Every example in a public docstring runs (doctest)."""

import doctest
import importlib

import pytest

# Modules whose docstrings hold `>>>` examples; GenCast's run in
# tests/test_gencast_api.py where DeepMind's code is installed.
MODULES = ("gencast_control.api",)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0, f"{name} has no examples"
  assert result.failed == 0
