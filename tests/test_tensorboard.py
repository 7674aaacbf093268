"""Training writes its scalars as TensorBoard event files beside log.jsonl."""

import json
import struct
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pytest

from gencast_control.training import scalar_writer, training_loop


def read_scalars(workdir) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of a folder's event files, as TensorBoard sees them
  (a session's START purges the steps from its own on)."""
  try:
    from tensorboard.backend.event_processing import event_accumulator
  except ImportError:
    event_accumulator = None
  if event_accumulator is not None:
    acc = event_accumulator.EventAccumulator(str(workdir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)}
            for tag in acc.Tags()["scalars"]}
  # TFRecord framing: 8-byte length, 4-byte crc, data, 4-byte crc.
  from tensorboardX.proto.event_pb2 import Event, SessionLog
  scalars: dict[str, dict[int, float]] = {}
  for path in sorted(Path(workdir).glob("events.out.tfevents.*")):
    data, pos = path.read_bytes(), 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 16 + length
      if event.session_log.status == SessionLog.START:
        for values in scalars.values():
          for step in [s for s in values if s >= event.step]:
            del values[step]
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def _train(workdir, num_steps):
  """The quadratic loss of test_controller_training's best-validation test,
  logged every 2 steps, validated every 2."""
  loss_fn = lambda p, k: (jnp.sum((p["w"] - 3.0)**2), {"w": p["w"]})
  return training_loop.train(
      loss_fn, {"w": jnp.zeros(())}, optax.sgd(0.1), num_steps,
      jax.random.PRNGKey(0), workdir, checkpoint_every=2, log_every=2,
      progress=False, validate=lambda p: {"validation_crps": float(p["w"])},
      validate_every=2, best_metric="validation_crps")


def _log(workdir):
  return [json.loads(line)
          for line in (workdir / "log.jsonl").read_text().splitlines()]


def test_training_writes_tensorboard_scalars_and_a_resume_purges_replays(
    tmp_path):
  pytest.importorskip("tensorboardX")
  _train(tmp_path, 4)
  _train(tmp_path, 6)  # resumes at step 4
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
  scalars = read_scalars(tmp_path)
  log = _log(tmp_path)
  assert {"loss", "grad_norm", "w", "validation_crps",
          "step_seconds"} <= set(scalars)
  for tag in ("loss", "grad_norm", "w", "validation_crps"):
    expected = {r["step"]: r[tag] for r in log if tag in r}
    assert sorted(expected) == [2, 4, 6]
    assert scalars[tag] == pytest.approx(expected, rel=1e-6)
  assert sorted(scalars["step_seconds"]) == [2, 4, 6]
  assert all(v >= 0 for v in scalars["step_seconds"].values())


def test_a_replayed_step_is_purged_from_the_curves(tmp_path):
  """A session killed after its checkpoint logged steps that the resumed
  session replays: TensorBoard keeps the resumed session's values."""
  pytest.importorskip("tensorboardX")
  writer = scalar_writer.open_writer(tmp_path, 0)
  for step in (2, 4, 6):  # checkpoint at 4, killed after logging 6
    writer.write({"loss": 10.0 - step, "step": step, "seconds": step})
  writer.close()
  writer = scalar_writer.open_writer(tmp_path, 4)
  writer.write({"loss": 1.0, "step": 6, "seconds": 3.0})
  writer.close()
  scalars = read_scalars(tmp_path)
  assert scalars["loss"] == {2: 8.0, 4: 6.0, 6: 1.0}
  assert scalars["step_seconds"] == {2: 1.0, 4: 1.0, 6: 1.5}


def test_without_tensorboardx_the_log_says_so_once(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
  assert scalar_writer.open_writer(tmp_path) is None
  _, history = _train(tmp_path, 2)
  _, history = _train(tmp_path, 4)
  notes = [r for r in _log(tmp_path) if "note" in r]
  assert notes == [{"step": 0, "note": scalar_writer.MISSING}]
  assert not list(tmp_path.glob("events.out.tfevents.*"))
  assert [r["step"] for r in history if "loss" in r] == [2, 4]
