"""Training for any model stack: the resumable optax loop, controller training.

training_loop (resumable, identity-checked, divergence-safe; in-jit or host
batches), controller_training (the objectives of Srivastava et al. 2025 for
any FrozenARDM, GenCast included), sharding (device meshes, multi-host).
Training of one model stack (the grid ARDM's pretraining,
adapters/grid_training.py) lives with its adapter.
"""
