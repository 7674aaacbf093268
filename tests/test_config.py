"""Configs: built-in and file configs, dotted overrides, dict round trips."""

import pytest

from gencast_control.core import config as config_lib
from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.core.controller import ControllerConfig


def test_builtin_config_and_overrides():
  cfg = config_lib.load_config("ks", ["controller_training.num_steps=7",
                                      "ardm.sampler.method='heun'",
                                      "assimilation.regime=random_5pct"])
  assert cfg.controller_training.num_steps == 7
  assert cfg.ardm.sampler.method == "heun"
  assert cfg.assimilation.regime == "random_5pct"
  assert cfg.regime("random_5pct").fraction == 0.05


def test_config_from_a_file(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text("from gencast_control.core.config import load_config\n"
                  "def get_config():\n"
                  "  return load_config('ks', ['data.num_train=3'])\n")
  assert config_lib.load_config(str(path)).data.num_train == 3


@pytest.mark.parametrize("override, message", [
    ("controller_training.nope=1", "unknown config field 'nope'"),
    ("ardm=3", "config section"),
    ("no_equals_sign", "field.path=value"),
])
def test_bad_overrides(override, message):
  with pytest.raises(ValueError, match=message):
    config_lib.load_config("ks", [override])


def test_unknown_config_and_regime():
  with pytest.raises(ValueError, match="unknown config"):
    config_lib.load_config("no_such_config")
  with pytest.raises(ValueError, match="unknown observation regime"):
    config_lib.load_config("ks").regime("nope")


def test_dict_round_trip_of_nested_frozen_configs():
  for cfg in (GridARDMConfig(), ControllerConfig(horizon=5)):
    assert config_lib.from_dict(type(cfg), config_lib.to_dict(cfg)) == cfg
