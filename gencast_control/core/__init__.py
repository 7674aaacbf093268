"""The method: the frozen-ARDM protocol, the controlled samplers, the controller.

ardm (FrozenARDM, ControllerInputs), samplers (Karras schedule, Euler / Heun /
DPM-Solver++ 2S with the per-sub-step control hook), networks (the conv net
of denoisers and controllers), controller (u_psi, init / save / load),
observations (streams, preview buffers), regimes (observing systems),
assimilation (the causal controlled rollout), checkpoint (self-describing
.npz files), config (dataclass configs, --set overrides). Nothing here knows a
particular model, data source or system.
"""
