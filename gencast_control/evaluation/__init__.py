"""Scores, tables and plots.

metrics (RMSE, ACC, fair CRPS, spread-skill, spectra; latitude weights),
per_regime (controller vs unguided per observation regime), benchmark (every
method x regime x system), era5_pilot (the sphere / ERA5 pilot), plots.
"""
