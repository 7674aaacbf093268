"""A resumable optax training loop shared by ARDM and controller training.

The state is a pytree {params, opt_state, step, key}. Step i draws its batch
from fold_in(key, i), so a run interrupted after a checkpoint and resumed takes
the same batches as an uninterrupted one: either inside the jitted loss
(loss_fn(params, key)) or, with `batches`, on the host (loss_fn(params, key,
batch) with batch = batches(fold_in(key, i))), for training data that lives in
host memory (long trajectory archives) or is read from a store step by step
(GenCast's examples, data/example_stream.py). Checkpoints are atomic
(checkpoint.save_training_state); losses go to a JSON-lines log and a tqdm bar.

With a device mesh (gencast_control.training.sharding) the state is
replicated on every device, before the first step and after restoring a
checkpoint, and the jitted step keeps it replicated (in/out shardings); a
host batch arrives split over the mesh by its examples (sharding.shard_batch),
an in-jit one is sharded by loss_fn. Only process 0 writes checkpoints and
logs.

Beside log.jsonl, the logged scalars (losses, validation scores, seconds per
step) are written as TensorBoard event files (`tensorboard --logdir WORKDIR`)
when tensorboardX is installed (training/scalar_writer.py); without it,
log.jsonl says so once.

With a `validate(params) -> {metric: value}` callback the parameters are
scored every `validate_every` steps (and at the end); the best ones by
`best_metric` (lower is better) are kept in workdir/best.npz and returned.

Nothing is lost or mislabelled:
* `identity` ({part: fingerprint}, see `fingerprint`) is stored with the
  state; resuming a state of another run (other config, data or frozen model)
  is refused with a RunMismatchError naming the parts that differ. The
  "optimizer" part (e.g. the learning rate) may change only when resuming a
  state stopped by divergence.
* A step whose loss, gradient or new parameters are not finite is never
  applied: the last good state (the last whose loss and gradient were
  finite) is saved and
  TrainingDivergedError names the step; a rerun with saner settings
  continues from that state.
* After a resume, log.jsonl drops the records of replayed steps, and stale
  temporary files of killed writes are removed.
* The work folder is locked while a run uses it (core/workdir_lock.py, taken
  by process 0): a second run on it fails with a FolderInUseError naming the
  first (pid, host, command line, start time). A killed run leaves no stale
  lock (flock dies with its process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from gencast_control.core import checkpoint
from gencast_control.core import workdir_lock
from gencast_control.training import scalar_writer
from gencast_control.training import sharding as sharding_lib

# loss_fn(params, key[, batch]) -> (loss, metrics dict of scalars)
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]

WORKDIR_FILES = ("state.npz", "best.npz", "log.jsonl")


class RunMismatchError(checkpoint.CheckpointError):
  """A work folder's state belongs to another run."""


class TrainingDivergedError(FloatingPointError):
  """A non-finite loss, gradient or parameter stopped training."""


def fingerprint(*parts) -> str:
  """A short SHA-256 of pytrees: their structure, array bytes and values."""
  digest = hashlib.sha256()
  for part in parts:
    leaves, treedef = jax.tree.flatten(part)
    digest.update(str(treedef).encode())
    for leaf in leaves:
      if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
      else:
        digest.update(json.dumps(leaf, default=str).encode())
  return digest.hexdigest()[:16]


# Fields that may change between a run's sessions: how long it runs, how
# often it saves or logs, and where it runs.
RESUMABLE_FIELDS = ("num_steps", "checkpoint_every", "log_every",
                    "validate_every", "shard_batch", "num_devices")
OPTIMIZER_FIELDS = ("learning_rate",)


def run_identity(training_config, data, *defining, frozen: str = ""
                 ) -> dict[str, str]:
  """{config, data, frozen, optimizer} fingerprints of a training run.

  training_config: a dataclass; its RESUMABLE_FIELDS are left out and its
    OPTIMIZER_FIELDS form the "optimizer" part.
  data: the training arrays (or a tuple of them).
  defining: anything else that defines the run (model config, regimes,
    initial parameters), JSON-serialisable or arrays.
  frozen: the fingerprint of a frozen model the run trains against.
  """
  fields = dataclasses.asdict(training_config)
  optimizer = {k: fields.pop(k) for k in OPTIMIZER_FIELDS if k in fields}
  for k in RESUMABLE_FIELDS:
    fields.pop(k, None)
  data = data if isinstance(data, tuple) else (data,)
  identity = {"config": fingerprint(fields, *defining),
              "data": fingerprint(*[d for d in data if d is not None]),
              "optimizer": fingerprint(optimizer)}
  if frozen:
    identity["frozen model"] = frozen
  return identity


def clear_workdir(workdir: str | Path) -> None:
  """Deletes a work folder's resumable state, best parameters and log."""
  for name in WORKDIR_FILES:
    (Path(workdir) / name).unlink(missing_ok=True)


_PART_NAMES = {"config": "config", "data": "training data",
               "frozen model": "frozen ARDM", "optimizer": "learning rate"}


def _check_identity(path: Path, meta: dict, identity: dict) -> list[str]:
  """Raises RunMismatchError unless `meta` was saved by the same run.

  Returns the parts allowed to differ (the optimizer's, after divergence).
  """
  stored = meta.get("identity")
  if stored is None:
    raise RunMismatchError(
        f"{path} records no run identity (written by an older version);"
        " delete it or rerun with --fresh to start afresh")
  differ = sorted(k for k in set(stored) | set(identity)
                  if stored.get(k) != identity.get(k))
  if differ == ["optimizer"] and meta.get("diverged_at_step"):
    return differ
  if differ:
    names = ", ".join(_PART_NAMES.get(k, k) for k in differ)
    raise RunMismatchError(
        f"{path} belongs to another run (other {names}): rerun with the"
        " original settings to continue it, or with --fresh (or another"
        " --workdir) to start afresh")
  return []


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
  """({params, opt_state, step, key}, metadata): fresh or from state_path.

  With a mesh every leaf is placed replicated on its devices.
  """
  state = {"params": params, "opt_state": optimizer.init(params),
           "step": jnp.zeros((), jnp.int32), "key": key}
  meta = {}
  if state_path is not None and Path(state_path).exists():
    state, meta = checkpoint.load_training_state(state_path, state)
  if mesh is not None:
    return sharding_lib.replicate(state, mesh), meta
  return jax.tree.map(jnp.asarray, state), meta


def _finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                            for x in jax.tree.leaves(tree)]))


@functools.lru_cache(maxsize=4)
def _update_fn(loss_fn: LossFn, optimizer: optax.GradientTransformation,
               mesh: jax.sharding.Mesh | None):
  """The jitted training step; cached, so that repeated `train` calls with
  the same loss, optimizer and mesh (a resumed run) compile it once."""
  jit_kwargs = {}
  if mesh is not None:
    replicated = sharding_lib.replicated(mesh)
    # The state replicated, a host batch (if any) split over its examples.
    jit_kwargs = dict(
        in_shardings=(replicated, sharding_lib.batch_sharding(mesh)),
        out_shardings=replicated)

  @functools.partial(jax.jit, **jit_kwargs)
  def update(state, batch):
    batch_key = jax.random.fold_in(state["key"], state["step"])
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], batch_key, *batch)  # batch: () or (host batch,)
    updates, opt_state = optimizer.update(grads, state["opt_state"],
                                          state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    finite = jnp.stack([jnp.isfinite(loss), _finite(grads), _finite(params)])
    return dict(state, params=params, opt_state=opt_state,
                step=state["step"] + 1), metrics, finite

  return update


def _replayed_log(log_path: Path, step: int) -> list[dict]:
  """The log's records up to `step`; rewrites the log without later ones."""
  if not log_path.exists():
    return []
  records = []
  for line in log_path.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # a line cut by a kill
      continue
    if record.get("step", 0) <= step:
      records.append(record)
  checkpoint.atomic_write(log_path, lambda f: f.write("".join(
      json.dumps(r) + "\n" for r in records).encode()))
  return records


def train(loss_fn: LossFn, params, optimizer: optax.GradientTransformation,
          num_steps: int, key: jax.Array, workdir: str | Path | None = None,
          checkpoint_every: int = 100, log_every: int = 10,
          description: str = "training", metadata: dict | None = None,
          progress: bool = True, mesh: jax.sharding.Mesh | None = None,
          validate: Callable[[Any], dict[str, float]] | None = None,
          validate_every: int = 0, best_metric: str = "",
          identity: dict[str, str] | None = None, divergence_hint: str = "",
          batches: Callable[[jax.Array], Any] | None = None):
  """Minimises loss_fn over params; resumes from workdir/state.npz if present.

  mesh: if given, the state is replicated over its devices (see module doc).
  validate, validate_every, best_metric: see the module doc.
  identity: {part: fingerprint} of what defines the run (module doc).
  divergence_hint: appended to the divergence error, e.g. which setting to
    lower.
  batches: batches(key) -> the host-side batch of the step whose batch key
    is `key` (module doc); loss_fn then takes it as its third argument.
    If it has a `prefetch(key)` method (data.example_stream.ExampleStream),
    the next step's batch is asked for before the current step runs. With
    a mesh, every process passes the whole batch, unless `batches` has a
    true `process_local` attribute: then each passes its own part
    (sharding.shard_local_batch).

  Returns:
    (params, history) with history the list of logged metric dicts (of
    earlier, resumed sessions too); params are the best validated ones when
    validating, else the final ones.
  """
  identity = dict(identity or {})
  state_path = log_path = best_path = None
  primary = sharding_lib.is_primary()
  lock = contextlib.ExitStack()  # the work folder's, held by process 0
  writer = None  # TensorBoard events beside log.jsonl
  if workdir is not None:
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
      raise NotADirectoryError(f"work folder {workdir} is a file")
    workdir.mkdir(parents=True, exist_ok=True)
    if primary:
      lock.enter_context(workdir_lock.locked(workdir))
  try:
    if workdir is not None:
      state_path, log_path = workdir / "state.npz", workdir / "log.jsonl"
      best_path = workdir / "best.npz"
      if primary:
        for stale in workdir.glob(".*.tmp"):  # left by a killed write
          stale.unlink(missing_ok=True)
    state, meta = initial_state(params, optimizer, key, state_path, mesh)
    history = []
    resumed_with = []
    if meta:
      resumed_with = _check_identity(state_path, meta, identity)
      if log_path is not None and primary:
        history = _replayed_log(log_path, int(state["step"]))
    best = {"params": state["params"],
            "score": jnp.asarray(np.inf, jnp.float32),
            "step": jnp.zeros((), jnp.int32)}
    if validate is not None and best_path is not None and best_path.exists():
      best, best_meta = checkpoint.load_training_state(best_path, best)
      _check_identity(best_path, best_meta, identity)
    update = _update_fn(loss_fn, optimizer, mesh)

    def save(**extra):
      if state_path is not None and primary:
        checkpoint.save_training_state(
            state_path, state,
            dict(metadata or {}, identity=identity, **extra))

    def log(record, keep=True):
      if keep:
        history.append(record)
      if log_path is not None and primary:
        with open(log_path, "a") as f:
          f.write(json.dumps(record) + "\n")
      if writer is not None:
        writer.write(record)

    def validation(step):
      nonlocal best
      scores = validate(state["params"])
      log(dict(scores, step=step))
      if scores[best_metric] < float(best["score"]):
        best = {"params": state["params"],
                "score": jnp.asarray(scores[best_metric], jnp.float32),
                "step": jnp.asarray(step, jnp.int32)}
        if best_path is not None and primary:
          checkpoint.save_training_state(best_path, best, {
              "metric": best_metric, "identity": identity})

    start = int(state["step"])
    if start > num_steps:
      raise RunMismatchError(
          f"{state_path} is at step {start}, beyond num_steps={num_steps}:"
          " raise num_steps to continue it, or rerun with --fresh")
    if log_path is not None and primary:
      writer = scalar_writer.open_writer(workdir, start)
      if writer is None and not any("note" in r for r in history):
        log({"step": start, "note": scalar_writer.MISSING}, keep=False)
    if resumed_with:
      log({"step": start, "event": "resumed after divergence with another"
           f" {', '.join(resumed_with)}"})
    bar = tqdm.trange(start, num_steps, desc=description, disable=not progress,
                      initial=start, total=num_steps)
    t0 = time.perf_counter()
    previous = state  # the state before the last update
    for i in bar:
      batch = ()
      if batches is not None:
        batch = (batches(jax.random.fold_in(state["key"], i)),)
        if hasattr(batches, "prefetch") and i + 1 < num_steps:
          # A streamed source reads the next step's batch meanwhile.
          batches.prefetch(jax.random.fold_in(state["key"], i + 1))
        if mesh is not None:
          place = (sharding_lib.shard_local_batch
                   if getattr(batches, "process_local", False)
                   else sharding_lib.shard_batch)
          batch = place(batch, mesh)
      new_state, metrics, finite = update(state, batch)
      finite = np.asarray(finite)
      if not finite.all():
        what = [w for w, ok in zip(("loss", "gradient", "parameters"), finite)
                if not ok]
        # The last good state: the one before, whose loss and gradient were
        # finite, unless only the update overflowed (then the current one).
        if not (finite[0] and finite[1]) and i > start:
          state = previous
        save(diverged_at_step=i + 1)
        where = (f"; the last good state (step {int(state['step'])}) is kept in"
                 f" {state_path}" if state_path is not None else "")
        raise TrainingDivergedError(
            f"{description} diverged at step {i + 1}: non-finite"
            f" {' and '.join(what)} (loss {float(metrics['loss']):.4g}){where}."
            f" {divergence_hint or 'Lower the learning rate'} and rerun:"
            " training continues from the last good state")
      previous, state = state, new_state
      if (i + 1) % log_every == 0 or i + 1 == num_steps:
        record = {k: float(v) for k, v in metrics.items()}
        record.update(step=i + 1, seconds=round(time.perf_counter() - t0, 2))
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
  finally:
    if writer is not None:
      writer.close()
    lock.close()
