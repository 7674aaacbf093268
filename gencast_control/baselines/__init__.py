"""Data-assimilation baselines beside the controller.

guidance (DPS, SDA, RePaint: guidance rules through a sampler's control
hook), enkf (stochastic EnKF with the true solver), letkf (localised ETKF
on the sphere).
"""
