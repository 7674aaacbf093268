"""Data on disk and from WeatherBench2.

trajectories (trajectory datasets, NetCDF / zarr, splits), era5_store (open
and describe stores), era5_schema (names, grids, forcings), era5_batches
(GenCast batches and back), era5_trajectories (ERA5 pilot trajectories),
obs_synthesis (observations of gridded fields: stations, swaths).
"""
