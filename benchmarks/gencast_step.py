"""Benchmark: one GenCast 12 h step, uncontrolled vs controlled vs DPS-guided.

Measured side by side in one run, on the same inputs, observations and keys,
after compilation (each variant timed round-robin, median of --repeats):

* controlled step / uncontrolled step           (goal <= 1.15x)
* DPS-guided step / controlled step              (goal >= 3x: controlled faster)

The uncontrolled step is this package's sampler without control (bit-identical
to DeepMind's); DeepMind's own sampler is timed too, for reference. DPS (Chung
et al. 2023, arXiv 2209.14687) is the project's DPS guidance rule
(`baselines.guidance.dps_rule`, the same rule the PDE benchmarks run): it adds
-zeta grad_z ||M (x_hat(z) - y)||^2 / sigma_o^2 in every sub-step, one extra
backward pass through GenCast's denoiser per sub-step. The controller costs
one small conv net per sub-step.

Usage:
    python benchmarks/gencast_step.py                    # tiny GenCast, CPU
    python benchmarks/gencast_step.py --arch mini1deg    # 1 deg Mini, random
                                                         # weights (GPU/TPU)
    python benchmarks/gencast_step.py --arch mini1deg --grad   # + training
    python benchmarks/gencast_step.py --arch mini1deg --flops  # XLA FLOP
                                            # counts only; fine on a CPU
    python benchmarks/gencast_step.py --arch mini1deg --construct-only

The results print as a markdown table under the provenance header (command,
date, machine, versions, commit); --publish also writes it to
docs/results/gencast_step_ARCH.md (gencast_step_ARCH_flops.md with --flops).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.adapters import gencast as g  # noqa: E402
from gencast_control.adapters.gencast import tiny  # noqa: E402
from gencast_control.core.checkpoint import write_json  # noqa: E402
from gencast_control.evaluation import engine, provenance  # noqa: E402
from gencast_control.core.controller import ControllerConfig  # noqa: E402
from gencast_control.baselines.guidance import DPSOptions, dps_rule  # noqa: E402
from gencast_control.core.observations import Preview  # noqa: E402


def _block(tree):
  return jax.tree.map(lambda x: x.block_until_ready()
                      if hasattr(x, "block_until_ready") else x,
                      jax.tree.leaves(tree))


def _preview(layout, targets, horizon, fraction, seed=0):
  """Observations of a random `fraction` of grid points at the target time."""
  truth = np.asarray(layout.stack(targets.isel(time=[0])))  # [B, lat, lon, C]
  rng = np.random.default_rng(seed)
  mask = (rng.random(truth.shape[:3]) < fraction)[..., None] & np.isfinite(
      truth)
  values = np.where(mask, truth, 0.0).astype(np.float32)
  frames = np.zeros((truth.shape[0], horizon) + truth.shape[1:], np.float32)
  masks = np.zeros_like(frames)
  frames[:, 0], masks[:, 0] = values, mask
  return Preview(jnp.asarray(frames), jnp.asarray(masks),
                 jnp.arange(1, horizon + 1, dtype=jnp.float32),
                 jnp.asarray(masks))  # error std 1 in physical units


def _dps_predictor(model, preview):
  """GenCast guided by the DPS rule toward the preview's first frame."""
  rule = dps_rule(DPSOptions(), preview.values[0, 0], preview.mask[0, 0],
                  1.0, None)
  return g.GenCastPredictor(model, check_inputs=False, guidance=rule)


def _peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", choices=("tiny", "mini1deg"), default="tiny")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--horizon", type=int, default=2)
  parser.add_argument("--fraction", type=float, default=0.1,
                      help="fraction of grid points observed")
  parser.add_argument("--skip-upstream", action="store_true",
                      help="do not time DeepMind's own sampler (saves a"
                      " compilation)")
  parser.add_argument("--grad", action="store_true",
                      help="also time one controller-training gradient"
                      " (window 1, remat) and report peak memory")
  parser.add_argument("--construct-only", action="store_true",
                      help="only build the architecture (shapes, no compute)")
  parser.add_argument("--flops", action="store_true",
                      help="only count XLA's FLOPs of each variant's lowered"
                      " step (abstract parameters: no compute; works for"
                      " mini1deg on a CPU)")
  parser.add_argument("--json", help="also write the results here")
  provenance.add_publish_argument(parser, "gencast_step_ARCH[_flops]")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args()
  publish = None
  if args.publish:
    if args.construct_only:
      parser.error("--construct-only measures nothing to publish")
    publish = provenance.publish_path(
        "gencast_step", args.arch, *(["flops"] if args.flops else []))
    provenance.check_publish([publish], args.overwrite)
  if args.flops:
    result = _count_flops(args.arch, args.horizon, args.fraction)
    if args.json:
      write_json(args.json, result)
    _report(markdown(result), publish)
    return

  t0 = time.perf_counter()
  if args.construct_only:
    count = _count_parameters(args.arch)
    print(f"{args.arch}: {count:,} GenCast parameters (abstract init,"
          f" {time.perf_counter() - t0:.1f} s)")
    return
  model = (tiny.tiny_model() if args.arch == "tiny"
           else tiny.mini_1deg_model())
  resolution = 10.0 if args.arch == "tiny" else 1.0
  example = tiny.synthetic_example(model.task_config, resolution, num_steps=1)
  inputs, targets, forcings = tiny.split_example(model.task_config, example, 1)
  template = targets * np.nan
  build_s = time.perf_counter() - t0
  layout = g.ChannelLayout.from_template(targets)
  config = ControllerConfig(horizon=args.horizon)
  ardm = g.GenCastARDM(model, inputs, targets, forcings)
  params = g.init_controller(config, ardm, jax.random.PRNGKey(1))
  # A trained controller has a non-zero output layer; its cost is the same.
  params = jax.tree.map(lambda p: p + 1e-3, params)
  preview = _preview(layout, targets, args.horizon, args.fraction)

  upstream = g.upstream_forward_transform(model)
  upstream_fn = jax.jit(lambda p, rng, i, t, f: upstream.apply(
      p, {}, rng, i, t, f)[0])
  plain = g.GenCastPredictor(model, check_inputs=False)
  controlled = g.GenCastPredictor(model, config, params, check_inputs=False)
  dps = _dps_predictor(model, preview)
  variants = {
      "upstream": lambda rng: upstream_fn(model.params, rng, inputs, template,
                                          forcings),
      "uncontrolled": lambda rng: plain(rng, inputs, template, forcings),
      "controlled": lambda rng: controlled(rng, inputs, template, forcings,
                                           preview),
      "dps": lambda rng: dps(rng, inputs, template, forcings, preview),
  }
  if args.skip_upstream:
    del variants["upstream"]
  compile_s = {}
  for name, fn in variants.items():
    start = time.perf_counter()
    _block(fn(jax.random.PRNGKey(0)))
    compile_s[name] = time.perf_counter() - start
  times = {name: [] for name in variants}
  for r in range(args.repeats):
    for name, fn in variants.items():
      start = time.perf_counter()
      _block(fn(jax.random.PRNGKey(r + 1)))
      times[name].append(time.perf_counter() - start)
  median = {name: statistics.median(t) for name, t in times.items()}
  fastest = {name: min(t) for name, t in times.items()}

  result = {
      "device": f"{jax.devices()[0].device_kind} x{jax.device_count()}",
      "jax": jax.__version__, "arch": args.arch,
      "grid": list(layout.spatial_shape), "channels": layout.num_channels,
      "conditioning_channels": ardm.conditioning_channels,
      "gencast_parameters": g.parameter_count(model.params),
      "controller_parameters": g.parameter_count(params),
      "controller": {"horizon": config.horizon,
                     "width": config.network.width,
                     "blocks": config.network.num_blocks,
                     "kernel": config.network.kernel_size},
      "build_s": round(build_s, 2),
      "compile_s": {k: round(v, 2) for k, v in compile_s.items()},
      "step_s_median": {k: round(v, 5) for k, v in median.items()},
      "step_s_min": {k: round(v, 5) for k, v in fastest.items()},
      "controlled_over_uncontrolled": median["controlled"]
      / median["uncontrolled"],
      "dps_over_controlled": median["dps"] / median["controlled"],
      "controlled_over_uncontrolled_min": fastest["controlled"]
      / fastest["uncontrolled"],
      "dps_over_controlled_min": fastest["dps"] / fastest["controlled"],
      "repeats": args.repeats,
  }
  if args.grad:
    result.update(_time_gradient(model, config, params, inputs, targets,
                                 forcings))
  print(f"device: {result['device']} (jax {jax.__version__}); GenCast"
        f" {args.arch}: {result['gencast_parameters']:,} parameters, grid"
        f" {layout.spatial_shape}, {layout.num_channels} channels; controller"
        f" {result['controller_parameters']:,} parameters")
  for name in variants:
    print(f"  {name:<13} step median {median[name]:9.4f} s, min"
          f" {fastest[name]:9.4f} s   (compile {compile_s[name]:6.1f} s)")
  print("controlled / uncontrolled ="
        f" {result['controlled_over_uncontrolled']:.3f}x median,"
        f" {result['controlled_over_uncontrolled_min']:.3f}x min"
        " (goal <= 1.15x)")
  print(f"DPS / controlled          = {result['dps_over_controlled']:.3f}x"
        f" median, {result['dps_over_controlled_min']:.3f}x min (goal >= 3x)")
  if args.grad:
    print(f"controller gradient (state objective, 2 members, window 1,"
          f" remat): {result['grad_s']:.3f} s,"
          f" peak memory {result.get('peak_gib')} GiB")
  if args.json:
    write_json(args.json, result)
  _report(markdown(result), publish)


def markdown(result: dict) -> str:
  """A timing (or, with gflops_per_substep_body, a FLOP) result as a titled
  markdown table."""
  grid = "x".join(str(n) for n in result["grid"])
  head = (f"GenCast {result['arch']} ({result['gencast_parameters']:,}"
          f" parameters, grid {grid}); controller"
          f" {result['controller_parameters']:,} parameters.")
  if "gflops_per_substep_body" in result:
    flops = result["gflops_per_substep_body"]
    return "\n".join([
        f"# GenCast step FLOPs: {result['arch']}", "", head + " XLA's FLOPs"
        " of one sampler sub-step plus the fixed work, abstract parameters.",
        "", engine.markdown_table(["variant", "GFLOPs"],
                                  [[k, f"{v:.3f}"] for k, v in flops.items()]),
        "", f"Controlled / uncontrolled:"
        f" {result['controlled_over_uncontrolled']:.3f}x; DPS / controlled:"
        f" {result['dps_over_controlled']:.3f}x."])
  lines = [f"# GenCast 12 h step: {result['arch']}", "",
           head + f" Device {result['device']}; each variant compiled, then"
           f" run round-robin {result['repeats']} times.", "",
           engine.markdown_table(
               ["variant", "step median [s]", "step min [s]", "compile [s]"],
               [[k, f"{v:.4f}", f"{result['step_s_min'][k]:.4f}",
                 f"{result['compile_s'][k]:.1f}"]
                for k, v in result["step_s_median"].items()]), "",
           f"Controlled / uncontrolled:"
           f" {result['controlled_over_uncontrolled']:.3f}x median,"
           f" {result['controlled_over_uncontrolled_min']:.3f}x min (goal <="
           f" 1.15x). DPS / controlled: {result['dps_over_controlled']:.3f}x"
           f" median, {result['dps_over_controlled_min']:.3f}x min (goal >="
           " 3x)."]
  if "grad_s" in result:
    lines.append(f"Controller gradient (state objective, 2 members, window"
                 f" 1, remat): {result['grad_s']:.3f} s, peak memory"
                 f" {result.get('peak_gib')} GiB.")
  return "\n".join(lines)


def _report(text: str, publish) -> None:
  """Prints the table under its provenance header; writes it to `publish`
  (a docs/results/ path) when given."""
  print(provenance.with_header(text, sys.argv))
  if publish is not None:
    provenance.publish(publish, text, sys.argv)
    print(f"wrote {publish}")


def _time_gradient(model, config, params, inputs, targets, forcings):
  """One gradient of the "state" objective (2 members, window 1, remat)
  through GenCast as a FrozenARDM: the step of controller training."""
  from gencast_control.training.controller_training import (
      ControllerTrainingConfig, channel_scale, controller_loss_fn,
      window_batches)
  from gencast_control.core.regimes import ObservationRegime
  ardm = g.GenCastARDM(model, inputs, targets, forcings)
  states, context = ardm.trajectories(inputs, targets, forcings)
  regimes = ardm.in_physical_units(
      [ObservationRegime("sparse", fraction=0.1, noise_std=0.1)])
  training = ControllerTrainingConfig(objective="state", members=2, window=1,
                                      spinup=0, cold_fraction=0.0,
                                      batch_size=1)
  loss_fn = controller_loss_fn(ardm, channel_scale(states), regimes, config,
                               training)
  batches = window_batches(states, context, 1, training.members,
                           ardm.history_length + 1, ardm.history_length)
  grad = jax.jit(jax.value_and_grad(lambda p, k, b: loss_fn(p, k, b)[0]))
  key = jax.random.PRNGKey(0)
  start = time.perf_counter()
  _block(grad(params, key, batches(key)))
  compile_s = time.perf_counter() - start
  key = jax.random.PRNGKey(1)
  batch = batches(key)
  start = time.perf_counter()
  _block(grad(params, key, batch))
  out = {"grad_s": time.perf_counter() - start,
         "grad_compile_s": round(compile_s, 2)}
  peak = _peak_bytes()
  if peak is not None:
    out["peak_gib"] = round(peak / 2**30, 2)
  return out


def _flops(lowered) -> float:
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost["flops"])


def _count_flops(arch, horizon, fraction):
  """FLOPs of one step of each variant, from XLA's HLO cost analysis.

  Parameters are abstract (jax.eval_shape), so nothing runs. XLA counts a
  while loop's body once, so these are the FLOPs of one sampler sub-step
  plus the step's fixed work: their ratios are the per-sub-step cost ratios.
  """
  t0 = time.perf_counter()
  model = (tiny.tiny_model(init=False) if arch == "tiny"
           else tiny.mini_1deg_model(init=False))
  example = tiny.synthetic_example(model.task_config,
                                   10.0 if arch == "tiny" else 1.0, 1)
  inputs, targets, forcings = tiny.split_example(model.task_config, example, 1)
  params = jax.eval_shape(g.forward_transform(model).init,
                          jax.random.PRNGKey(0), inputs, targets, forcings)[0]
  layout = g.ChannelLayout.from_template(targets)
  config = ControllerConfig(horizon=horizon)
  ardm = g.GenCastARDM(model, inputs, targets, forcings)
  controller_params = jax.eval_shape(
      lambda: g.init_controller(config, ardm, jax.random.PRNGKey(1)))
  preview = _preview(layout, targets, horizon, fraction)
  template = targets * np.nan
  rng = jax.random.PRNGKey(0)
  flops = {}
  plain = g.GenCastPredictor(model, check_inputs=False)
  flops["uncontrolled"] = _flops(jax.jit(plain._apply_plain).lower(
      params, rng, inputs, template, forcings))
  for name, predictor, ctrl in (
      ("controlled", g.GenCastPredictor(model, config, controller_params,
                                        check_inputs=False),
       controller_params),
      ("dps", _dps_predictor(model, preview), None)):
    flops[name] = _flops(jax.jit(predictor._apply_controlled).lower(
        params, ctrl, rng, inputs, template, forcings, preview))
  result = {
      "arch": arch, "grid": list(layout.spatial_shape),
      "gencast_parameters": int(sum(np.prod(p.shape)
                                    for p in jax.tree.leaves(params))),
      "controller_parameters": int(sum(
          np.prod(p.shape) for p in jax.tree.leaves(controller_params))),
      "gflops_per_substep_body": {k: round(v / 1e9, 3)
                                  for k, v in flops.items()},
      "controlled_over_uncontrolled": flops["controlled"]
      / flops["uncontrolled"],
      "dps_over_controlled": flops["dps"] / flops["controlled"],
      "seconds": round(time.perf_counter() - t0, 1),
  }
  print(f"{arch}: GenCast {result['gencast_parameters']:,} parameters,"
        f" controller {result['controller_parameters']:,}; XLA GFLOPs (one"
        f" sampler sub-step + fixed work): {result['gflops_per_substep_body']}")
  print(f"FLOPs controlled / uncontrolled = "
        f"{result['controlled_over_uncontrolled']:.3f}x;"
        f" DPS / controlled = {result['dps_over_controlled']:.3f}x")
  return result


def _count_parameters(arch: str) -> int:
  """GenCast parameter count from an abstract init (no compute)."""
  model = (tiny.tiny_model(init=False) if arch == "tiny"
           else tiny.mini_1deg_model(init=False))
  example = tiny.synthetic_example(model.task_config,
                                   10.0 if arch == "tiny" else 1.0, 1)
  inputs, targets, forcings = tiny.split_example(model.task_config, example, 1)
  shapes = jax.eval_shape(g.forward_transform(model).init,
                          jax.random.PRNGKey(0), inputs, targets, forcings)[0]
  return int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)))


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/gencast_step.py", main))
