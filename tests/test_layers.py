"""The package's folders are layers: no module imports from a layer above it.

The layers, lowest first (docs/architecture.md):

    core        the protocol and the method: FrozenARDM, samplers, networks,
                controller, observations, regimes, the causal rollout,
                checkpoints, configs
    data        trajectories on disk, WeatherBench2 stores, GenCast batches,
                synthetic observations
    training    the resumable loop, controller training for any FrozenARDM,
                sharding
    adapters    one model stack per module (the grid ARDM and its
                pretraining, GenCast); installed from adapters/
    systems     the simulators, their registry, experiment configs and the
                experiment's files: splits, checkpoints, held-out truth,
                cold starts
    baselines   DPS / SDA / RePaint, the EnKF, the LETKF and the
                perfect-model filter
    evaluation  metrics, the engine, forecasts, benchmark, pilot, plots
    top         gencast_control/*.py: the public API and the commands

A module may import from its own layer and the ones below. The modules are
read with `ast`, so nothing is imported and imports inside functions count
too. `gencast_control.configs` modules that the package imports must be
leaves (settings that import nothing of the package); the experiment configs
are loaded by path (`core.config.load_config`), never imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gencast_control"
LAYERS = ("core", "data", "training", "adapters", "systems", "baselines",
          "evaluation", "top")
# Where the modules of a dotted name prefix live (adapters/ and configs/ are
# installed into the package through [tool.setuptools.package-dir]).
SOURCES = {PACKAGE: "gencast_control", f"{PACKAGE}.adapters": "adapters",
           f"{PACKAGE}.configs": "configs"}


def module_path(root: Path, name: str) -> Path | None:
  """The file of module or package `name` under root, or None."""
  for prefix in sorted(SOURCES, key=len, reverse=True):
    if name == prefix or name.startswith(prefix + "."):
      rest = name[len(prefix) + 1:].split(".") if name != prefix else []
      base = root.joinpath(SOURCES[prefix], *rest)
      for path in ([base.with_suffix(".py")] if rest else []) + [
          base / "__init__.py"]:
        if path.is_file():
          return path
      return None
  return None


def package_modules(root: Path) -> dict[str, Path]:
  """{dotted name: path} of every module of gencast_control/ and adapters/."""
  out = {}
  for prefix in (PACKAGE, f"{PACKAGE}.adapters"):
    base = root / SOURCES[prefix]
    for path in sorted(base.rglob("*.py")):
      parts = list(path.relative_to(base).with_suffix("").parts)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join([prefix] + parts)] = path
  return out


def layer_of(root: Path, name: str) -> str | None:
  """The layer of a package module; None for gencast_control.configs."""
  parts = name.split(".")
  if parts[1:2] == ["configs"]:
    return None
  path = module_path(root, name)
  in_folder = len(parts) > 2 or (path is not None
                                 and path.name == "__init__.py")
  if len(parts) == 1 or not in_folder:
    return "top"  # gencast_control/*.py
  if parts[1] not in LAYERS:
    raise AssertionError(f"{name}: the folder gencast_control/{parts[1]}/ is"
                         f" in no layer; add it to LAYERS ({__file__})")
  return parts[1]


def imports(root: Path, name: str, path: Path) -> list[tuple[str, int]]:
  """(module, line) of every gencast_control import of a module."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [(a.name, node.lineno) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
      else:
        source = node.module or ""
      for a in node.names:  # `from pkg import module` imports the module
        sub = f"{source}.{a.name}"
        found.append((sub if module_path(root, sub) else source, node.lineno))
  return sorted({(m, line) for m, line in found
                 if m == PACKAGE or m.startswith(PACKAGE + ".")},
                key=lambda x: x[1])


def violations(root: Path) -> list[str]:
  """One line per import from a higher layer, or of a configs module that
  is not a leaf."""
  out = []
  for name, path in package_modules(root).items():
    own = layer_of(root, name)
    for target, line in imports(root, name, path):
      where = f"{path.relative_to(root)}:{line}"
      theirs = layer_of(root, target)
      if theirs is None:
        config = module_path(root, target)
        inner = imports(root, target, config) if config else []
        if inner:
          out.append(f"{where}: {name} ({own}) imports {target}, a configs"
                     f" module that imports {inner[0][0]}: the package may"
                     " import only leaf settings from configs/")
      elif LAYERS.index(theirs) > LAYERS.index(own):
        out.append(f"{where}: {name} (layer {own}) imports {target} (layer"
                   f" {theirs}, above it)")
  return sorted(out)


def test_no_module_imports_from_a_higher_layer():
  found = violations(ROOT)
  assert not found, ("imports from a higher layer (order, lowest first: "
                     + " < ".join(LAYERS) + "):\n" + "\n".join(found))


def test_every_layer_folder_exists():
  for layer in LAYERS[:-1]:
    where = ROOT / (SOURCES[f"{PACKAGE}.adapters"] if layer == "adapters"
                    else f"{PACKAGE}/{layer}")
    assert (where / "__init__.py").is_file(), f"layer {layer}: no {where}"


def _write(root: Path, files: dict[str, str]):
  for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_check_names_module_import_and_both_layers(tmp_path):
  _write(tmp_path, {
      "gencast_control/__init__.py": "",
      "gencast_control/api.py": "from gencast_control.core import a\n",
      "gencast_control/core/__init__.py": "",
      "gencast_control/core/a.py": (
          "def f():\n  from gencast_control.evaluation import b\n"),
      "gencast_control/evaluation/__init__.py": "",
      "gencast_control/evaluation/b.py": "from ..core import a\n",
      "gencast_control/data/__init__.py": "",
      "gencast_control/data/c.py": (
          "from gencast_control.configs import stores, ks\n"
          "from gencast_control import api\n"),
      "adapters/__init__.py": "",
      "adapters/m.py": "import gencast_control.systems.s\n",
      "gencast_control/systems/__init__.py": "",
      "gencast_control/systems/s.py": "from gencast_control.adapters import m\n",
      "configs/stores.py": "PATH = 'x'\n",
      "configs/ks.py": "from gencast_control.systems import s\n",
  })
  found = violations(tmp_path)
  assert found == [
      "adapters/m.py:1: gencast_control.adapters.m (layer adapters) imports"
      " gencast_control.systems.s (layer systems, above it)",
      "gencast_control/core/a.py:2: gencast_control.core.a (layer core)"
      " imports gencast_control.evaluation.b (layer evaluation, above it)",
      "gencast_control/data/c.py:1: gencast_control.data.c (data) imports"
      " gencast_control.configs.ks, a configs module that imports"
      " gencast_control.systems.s: the package may import only leaf"
      " settings from configs/",
      "gencast_control/data/c.py:2: gencast_control.data.c (layer data)"
      " imports gencast_control.api (layer top, above it)",
  ], found


def test_a_folder_in_no_layer_is_named(tmp_path):
  _write(tmp_path, {"gencast_control/__init__.py": "",
                    "adapters/__init__.py": "",
                    "gencast_control/extras/__init__.py": ""})
  with pytest.raises(AssertionError, match="gencast_control/extras/ is in no"):
    violations(tmp_path)
