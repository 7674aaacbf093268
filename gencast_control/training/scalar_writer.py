"""Training scalars as TensorBoard event files (optional: tensorboardX).

`open_writer(workdir, start_step)` returns a ScalarWriter that writes every
number of a log.jsonl record as a scalar at the record's step (tag = the
record's key) plus `step_seconds`, the wall-clock seconds per step since the
previous record; or None when tensorboardX is not installed
(pip install 'gencast-control[tensorboard]'). A resumed run purges the
replayed steps (TensorBoard's purge_step), so curves do not double back.
"""

from __future__ import annotations

import numbers

MISSING = ("tensorboardX is not installed: no TensorBoard events, the"
           " scalars are in log.jsonl only (pip install"
           " 'gencast-control[tensorboard]')")


class ScalarWriter:

  def __init__(self, writer, start_step: int):
    self._writer, self._last = writer, (start_step, 0.0)

  def write(self, record: dict) -> None:
    step = int(record["step"])
    for key, value in record.items():
      if (key not in ("step", "seconds") and isinstance(value, numbers.Real)
          and not isinstance(value, bool)):
        self._writer.add_scalar(key, value, step)
    if "seconds" in record and step > self._last[0]:
      seconds = record["seconds"] - self._last[1]
      self._writer.add_scalar("step_seconds", seconds / (step - self._last[0]),
                              step)
      self._last = (step, record["seconds"])

  def close(self) -> None:
    self._writer.close()


def open_writer(workdir, start_step: int = 0) -> ScalarWriter | None:
  try:
    from tensorboardX import SummaryWriter
  except ImportError:
    return None
  # The suffix keeps the files of sessions started in one second apart, in
  # order (tensorboardX names them by the second).
  return ScalarWriter(SummaryWriter(
      str(workdir), flush_secs=10, filename_suffix=f".{start_step:09d}",
      purge_step=start_step + 1 if start_step else None), start_step)
