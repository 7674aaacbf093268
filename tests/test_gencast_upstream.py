"""Which of DeepMind's GenCast layouts is imported; runs without either."""

import importlib

import pytest

from gencast_control.adapters.gencast import upstream as gencast_upstream


def test_missing_package_raises_install_hint(monkeypatch):
  real = importlib.import_module

  def no_deepmind(name, *args):
    if name.split(".")[0] in ("graphcast", "weathernext", "xarray_jax"):
      raise ImportError(f"No module named {name!r}")
    return real(name, *args)

  monkeypatch.setattr(gencast_upstream, "_CACHE", [])
  monkeypatch.setattr(gencast_upstream.importlib, "import_module", no_deepmind)
  with pytest.raises(ImportError, match="git\\+https://github.com/"
                     "google-deepmind/graphcast@08cf736") as info:
    gencast_upstream.upstream()
  assert isinstance(info.value, gencast_upstream.GenCastNotInstalledError)
  assert "PyPI" in str(info.value)
  assert not gencast_upstream.is_available()


def test_the_layout_variable_chooses_the_layout_tried_first(monkeypatch):
  monkeypatch.delenv(gencast_upstream.LAYOUT_VARIABLE, raising=False)
  assert gencast_upstream._layout_order() == ("graphcast", "weathernext")
  monkeypatch.setenv(gencast_upstream.LAYOUT_VARIABLE, "weathernext")
  assert gencast_upstream._layout_order() == ("weathernext", "graphcast")
  monkeypatch.setenv(gencast_upstream.LAYOUT_VARIABLE, "graphcast0.3")
  with pytest.raises(ValueError, match="choose one of"):
    gencast_upstream._layout_order()
