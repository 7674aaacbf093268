"""Training: the resumable optax loop, ARDM pretraining, controller training.

training_loop (resumable, identity-checked, divergence-safe; in-jit or host
batches), ardm_training (EDM pretraining of grid ARDMs), controller_training
(the objectives of Srivastava et al. 2025 for any FrozenARDM, GenCast
included), sharding (device meshes, multi-host).
"""
