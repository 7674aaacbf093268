"""Registry of DeepMind's public GenCast assets (weights, statistics, examples).

All live in the public bucket gs://dm_graphcast/gencast (read anonymously), as
listed by DeepMind's graphcast README and gencast_mini_demo.ipynb (Price et al.
2024, "GenCast: Diffusion-based ensemble forecasting for medium-range weather",
arXiv 2312.15796). This module is the only place where these paths appear.
"""

from __future__ import annotations

import dataclasses

BUCKET = "gs://dm_graphcast/gencast"

# checkpoint.load(f, gencast.CheckPoint) files under params/.
CHECKPOINTS: dict[str, str] = {
    "1p0deg_mini": "GenCast 1p0deg Mini <2019.npz",
    "1p0deg": "GenCast 1p0deg <2019.npz",
    "0p25deg": "GenCast 0p25deg <2019.npz",
    "0p25deg_operational": "GenCast 0p25deg Operational <2022.npz",
}

# Normalisation statistics (NetCDF) under stats/, shared by all checkpoints.
STATS_FILES: tuple[str, ...] = ("diffs_stddev_by_level", "mean_by_level",
                                "stddev_by_level", "min_by_level")

# Example inputs under dataset/ (one 30-step 1 deg ERA5 example as documented
# in DeepMind's docs/cloud_vm_setup.md).
EXAMPLE_DATASETS: dict[str, str] = {
    "era5_1p0deg_2019-03-29_30steps":
        "source-era5_date-2019-03-29_res-1.0_levels-13_steps-30.nc",
}


@dataclasses.dataclass(frozen=True)
class AssetConfig:
  """Where GenCast assets are read from.

  Attributes:
    bucket: the gs:// prefix of the asset tree (params/, stats/, dataset/).
    timeout_s: deadline for any single network read.
  """
  bucket: str = BUCKET
  timeout_s: float = 60.0


def checkpoint_path(name: str, bucket: str = BUCKET) -> str:
  """gs:// path of a registered checkpoint (see CHECKPOINTS)."""
  if name not in CHECKPOINTS:
    raise ValueError(f"unknown GenCast checkpoint {name!r}; registered:"
                     f" {', '.join(CHECKPOINTS)}")
  return f"{bucket}/params/{CHECKPOINTS[name]}"


def stats_path(name: str, bucket: str = BUCKET) -> str:
  """gs:// path of one normalisation statistics file (see STATS_FILES)."""
  if name not in STATS_FILES:
    raise ValueError(f"unknown GenCast statistics {name!r}; expected one of"
                     f" {', '.join(STATS_FILES)}")
  return f"{bucket}/stats/{name}.nc"


def example_dataset_path(name: str, bucket: str = BUCKET) -> str:
  """gs:// path of a registered example dataset (see EXAMPLE_DATASETS)."""
  if name not in EXAMPLE_DATASETS:
    raise ValueError(f"unknown GenCast example dataset {name!r}; registered:"
                     f" {', '.join(EXAMPLE_DATASETS)}")
  return f"{bucket}/dataset/{EXAMPLE_DATASETS[name]}"


def get_config() -> AssetConfig:
  return AssetConfig()
