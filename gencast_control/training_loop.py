"""A resumable optax training loop shared by ARDM and controller training.

The state is a pytree {params, opt_state, step, key}. Step i draws its batch
from fold_in(key, i), so a run interrupted after a checkpoint and resumed takes
the same batches as an uninterrupted one. Checkpoints are atomic
(checkpoint.save_training_state); losses go to a JSON-lines log and a tqdm bar.

With a device mesh (gencast_control.sharding) the state is replicated on every
device, before the first step and after restoring a checkpoint, and the jitted
step keeps it replicated (in/out shardings); loss_fn shards its batch over the
mesh. Only process 0 writes checkpoints and logs.

With a `validate(params) -> {metric: value}` callback the parameters are
scored every `validate_every` steps (and at the end); the best ones by
`best_metric` (lower is better) are kept in workdir/best.npz and returned.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from gencast_control import checkpoint
from gencast_control import sharding as sharding_lib

# loss_fn(params, key) -> (loss, metrics dict of scalars)
LossFn = Callable[[Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def make_optimizer(learning_rate: float, num_steps: int,
                   warmup_steps: int = 100, clip_norm: float = 1.0):
  """AdamW with linear warm-up, cosine decay and global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, min(warmup_steps, max(num_steps // 10, 1)),
      max(num_steps, 2), end_value=learning_rate * 0.05)
  return optax.chain(optax.clip_by_global_norm(clip_norm),
                     optax.adamw(schedule, weight_decay=1e-5))


def initial_state(params, optimizer: optax.GradientTransformation,
                  key: jax.Array, state_path: str | Path | None = None,
                  mesh: jax.sharding.Mesh | None = None):
  """{params, opt_state, step, key}: fresh, or restored from state_path.

  With a mesh every leaf is placed replicated on its devices.
  """
  state = {"params": params, "opt_state": optimizer.init(params),
           "step": jnp.zeros((), jnp.int32), "key": key}
  if state_path is not None and Path(state_path).exists():
    state, _ = checkpoint.load_training_state(state_path, state)
  if mesh is not None:
    return sharding_lib.replicate(state, mesh)
  return jax.tree.map(jnp.asarray, state)


def train(loss_fn: LossFn, params, optimizer: optax.GradientTransformation,
          num_steps: int, key: jax.Array, workdir: str | Path | None = None,
          checkpoint_every: int = 100, log_every: int = 10,
          description: str = "training", metadata: dict | None = None,
          progress: bool = True, mesh: jax.sharding.Mesh | None = None,
          validate: Callable[[Any], dict[str, float]] | None = None,
          validate_every: int = 0, best_metric: str = ""):
  """Minimises loss_fn over params; resumes from workdir/state.npz if present.

  mesh: if given, the state is replicated over its devices (see module doc).
  validate, validate_every, best_metric: see the module doc.

  Returns:
    (params, history) with history a list of logged metric dicts; params are
    the best validated ones when validating, else the final ones.
  """
  state_path = log_path = best_path = None
  if workdir is not None:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state_path, log_path = workdir / "state.npz", workdir / "log.jsonl"
    best_path = workdir / "best.npz"
  state = initial_state(params, optimizer, key, state_path, mesh)
  best = {"params": state["params"], "score": jnp.asarray(np.inf, jnp.float32),
          "step": jnp.zeros((), jnp.int32)}
  if validate is not None and best_path is not None and best_path.exists():
    best, _ = checkpoint.load_training_state(best_path, best)
  jit_kwargs = {}
  if mesh is not None:
    replicated = sharding_lib.replicated(mesh)
    jit_kwargs = dict(in_shardings=replicated, out_shardings=replicated)
  primary = sharding_lib.is_primary()

  @functools.partial(jax.jit, **jit_kwargs)
  def update(state):
    batch_key = jax.random.fold_in(state["key"], state["step"])
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], batch_key)
    updates, opt_state = optimizer.update(grads, state["opt_state"],
                                          state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    return dict(state, params=params, opt_state=opt_state,
                step=state["step"] + 1), metrics

  def save():
    if state_path is not None and primary:
      checkpoint.save_training_state(state_path, state, dict(metadata or {}))

  def log(record):
    history.append(record)
    if log_path is not None and primary:
      with open(log_path, "a") as f:
        f.write(json.dumps(record) + "\n")

  def validation(step):
    nonlocal best
    scores = validate(state["params"])
    log(dict(scores, step=step))
    if scores[best_metric] < float(best["score"]):
      best = {"params": state["params"],
              "score": jnp.asarray(scores[best_metric], jnp.float32),
              "step": jnp.asarray(step, jnp.int32)}
      if best_path is not None and primary:
        checkpoint.save_training_state(best_path, best,
                                       {"metric": best_metric})

  history = []
  start = int(state["step"])
  bar = tqdm.trange(start, num_steps, desc=description, disable=not progress,
                    initial=start, total=num_steps)
  t0 = time.perf_counter()
  for i in bar:
    state, metrics = update(state)
    if (i + 1) % log_every == 0 or i + 1 == num_steps:
      record = {k: float(v) for k, v in metrics.items()}
      record.update(step=i + 1, seconds=round(time.perf_counter() - t0, 2))
      if not np.isfinite(record["loss"]):
        save()
        raise FloatingPointError(
            f"{description}: loss became {record['loss']} at step {i + 1}")
      bar.set_postfix(loss=f"{record['loss']:.4g}")
      log(record)
    if validate is not None and ((i + 1) % validate_every == 0
                                 or i + 1 == num_steps):
      validation(i + 1)
    if (i + 1) % checkpoint_every == 0:
      save()
  save()
  if validate is not None and np.isfinite(float(best["score"])):
    return best["params"], history
  return state["params"], history
