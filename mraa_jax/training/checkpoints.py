"""Training checkpoints with orbax's CheckpointManager: state plus a JSON of progress.

Each checkpoint holds the TrainState (params, batch stats, optimiser state, step,
RNG key) as item `state`, and `progress` (epoch, data position, anything the
loop needs to resume) as JSON. orbax writes each step to a temporary directory
and renames it when complete, so a crash never leaves a half-written latest
checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """Save every `every_steps` steps (and when forced), keep the last `keep`."""

    def __init__(self, directory, every_steps: int = 1000, keep: int = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(save_interval_steps=every_steps, max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "progress"))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, progress: dict, force: bool = False) -> bool:
        """Save if `step` is due (or `force`); returns whether it saved."""
        return self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)),
            force=force,
        )

    def restore(self, target_state: Any, step: Optional[int] = None) -> tuple[Any, dict]:
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
        """Block until asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
