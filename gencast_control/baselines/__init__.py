"""Data-assimilation baselines beside the controller.

guidance (DPS, SDA, RePaint: guidance rules through a sampler's control
hook), enkf (stochastic EnKF with the true solver, `systems.registry`'s
model_step), letkf (localised ETKF on the sphere), perfect_model (the LETKF
cycling the Held-Suarez model that made the data).
"""
