"""Training checkpoints with orbax's CheckpointManager: state plus a JSON of progress.

Each checkpoint holds the TrainState (params, batch stats, optimiser state, step,
RNG key) as item `state`, and `progress` (epoch, data position, anything the
loop needs to resume) as JSON. Killed at any moment (kill -9 included), training
leaves only complete checkpoints under their step numbers: orbax writes each step
to a temporary directory and renames it when complete (a temporary one left by a
kill is removed when the directory is next opened), and an old checkpoint is
renamed into `.deleted/` before it is deleted, never deleted in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

DELETED = ".deleted"


class Checkpoints:
    """Save every `every_steps` steps (and when forced), keep the last `keep`."""

    def __init__(self, directory, every_steps: int = 1000, keep: int = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every_steps,
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,
            todelete_subdir=DELETED,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "progress"))
        self._empty_deleted()

    def _empty_deleted(self) -> None:
        """Delete the checkpoints orbax moved aside (process 0; a kill here leaves only `.deleted/` partial)."""
        if jax.process_index() == 0 and (self.directory / DELETED).is_dir():
            for old in (self.directory / DELETED).iterdir():
                shutil.rmtree(old, ignore_errors=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        """Whether `save(step, ...)` would save (the trainer checks the losses first)."""
        return self.manager.should_save(step)

    def save(self, step: int, state: Any, progress: dict, force: bool = False) -> bool:
        """Save if `step` is due (or `force`); returns whether it saved."""
        saved = self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)),
            force=force,
        )
        if saved:
            self._empty_deleted()
        return saved

    def restore(self, target_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, progress) of `step` (default: the latest), shaped and placed like `target_state`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target_state)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore())
        )
        return restored["state"], restored["progress"]

    def wait(self) -> None:
        """Block until asynchronous saves (and deletions) are on disk."""
        self.manager.wait_until_finished()
        self._empty_deleted()

    def close(self) -> None:
        self.manager.close()
        self._empty_deleted()
