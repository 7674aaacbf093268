"""Scores, tables and plots.

metrics (RMSE, ACC, fair CRPS, spread-skill, spectra; latitude weights),
engine (keys, timing, scores, reports), forecasts (controller vs unguided
ensembles of truth trajectories), per_regime (the two per observation
regime), benchmark (every method x regime x system), era5_pilot (the sphere
/ ERA5 pilot), plots.
"""
