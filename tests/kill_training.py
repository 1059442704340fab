"""kill -9 during training: SIGKILL the tiny training run at random moments, some of them
while a checkpoint is being written, rerun the same command after each kill, and check
that no checkpoint is left unreadable and that the final parameters equal an
uninterrupted run's.

    python tests/kill_training.py --kills 12 --during_save 4 --max_steps 12   # the long version
    (tests/test_kill_training.py runs a short one in CI: 2 kills, 1 during a save)

A kill counts as "during a save" when an unfinished checkpoint directory (orbax's
temporary one) is still there after the process died. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKER = HERE / "training_worker.py"


def _worker(workdir: Path, max_steps: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), "--workdir", str(workdir), "--max_steps", str(max_steps)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 600) -> None:
    _, stderr = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"training worker failed ({process.returncode}):\n{stderr[-3000:]}")


def _stage_dir(workdir: Path) -> Path:
    return workdir / "checkpoints" / "reconstruction"


def complete_steps(workdir: Path) -> list[int]:
    directory = _stage_dir(workdir)
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def unfinished_saves(workdir: Path) -> list[str]:
    """orbax's temporary directories of checkpoints being written."""
    directory = _stage_dir(workdir)
    return sorted(p.name for p in directory.iterdir() if "tmp" in p.name) if directory.is_dir() else []


def check_readable(workdir: Path) -> int:
    """Restore every checkpoint under its step number (and the model directory if any); returns how many."""
    import orbax.checkpoint as ocp

    from mraa_jax import model_dir

    steps = complete_steps(workdir)
    for step in steps:
        path = _stage_dir(workdir) / str(step)
        state = ocp.StandardCheckpointer().restore(path / "state")
        progress = (
            json.loads((path / "progress" / "metadata").read_text())
            if (path / "progress" / "metadata").is_file()
            else None
        )
        if int(np.asarray(state["step"])) != step or progress is None:
            raise AssertionError(f"{path}: holds step {state['step']}, progress {progress}")
    if (workdir / "model").exists():
        model_dir.load_variables(workdir / "model")
    return len(steps)


def final_params(workdir: Path) -> list[np.ndarray]:
    import jax

    from mraa_jax import model_dir

    return jax.tree_util.tree_leaves(model_dir.load_variables(workdir / "model"))


def _kill_when(
    process: subprocess.Popen, workdir: Path, during_save: bool, rng: random.Random, timeout: float = 300
) -> bool:
    """SIGKILL `process` once this run has written a checkpoint of its own: right when a save is
    in progress, or after a random 0-0.3 s more. Returns False if it finished first."""
    start_steps = set(complete_steps(workdir))
    deadline = time.monotonic() + timeout
    extra = rng.randint(1, 3)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        new = set(complete_steps(workdir)) - start_steps
        if during_save and new and unfinished_saves(workdir):
            break
        if not during_save and len(new) >= extra:
            time.sleep(rng.uniform(0.0, 0.3))
            break
        time.sleep(0.0005 if during_save and new else 0.02)
    else:
        raise TimeoutError("the training worker made no progress")
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def train(workdir: Path, max_steps: int) -> None:
    """The tiny training run, uninterrupted."""
    _finish(_worker(workdir, max_steps))


def run(root: Path, kills: int, during_save: int, max_steps: int, seed: int = 0, log=print) -> dict:
    """An uninterrupted run of `max_steps` in root/uninterrupted; in root/killed the same run killed
    `kills` times (at least `during_save` of them during a save), rerun after each kill, completed."""
    rng = random.Random(seed)
    reference, killed = root / "uninterrupted", root / "killed"
    train(reference, max_steps)
    done = {"kills": 0, "kills_during_save": 0, "restarts": 0}
    checked = 0
    while done["kills"] < kills or done["kills_during_save"] < during_save:
        want_save = done["kills_during_save"] < during_save and (
            done["kills"] >= kills - (during_save - done["kills_during_save"]) or rng.random() < 0.5
        )
        process = _worker(killed, max_steps)
        done["restarts"] += 1
        if not _kill_when(process, killed, want_save, rng):
            _finish(process)
            if complete_steps(killed) and complete_steps(killed)[-1] >= max_steps:
                shutil.rmtree(killed)  # finished before the kill: start over, so that the kills land in training
            continue
        in_save = bool(unfinished_saves(killed))
        done["kills"] += 1
        done["kills_during_save"] += in_save
        checked += check_readable(killed)
        log(f"kill {done['kills']}: at step {(complete_steps(killed) or [0])[-1]}{' during a save' if in_save else ''}")
    train(killed, max_steps)
    checked += check_readable(killed)
    leftovers = unfinished_saves(killed) + [p.name for p in killed.iterdir() if p.name.startswith(".model")]
    deleted = _stage_dir(killed) / ".deleted"
    leftovers += [p.name for p in deleted.iterdir()] if deleted.is_dir() else []
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(final_params(reference), final_params(killed)))
    return dict(
        done, checkpoints_restored=checked, leftovers=leftovers, max_abs_difference=difference, max_steps=max_steps
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--during_save", type=int, default=4)
    parser.add_argument("--max_steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the restarts compile the step once
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mraa-kill-xla-cache-")
    sys.path.insert(0, str(HERE.parent))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mraa-kill-") as root:
        result = run(Path(root), args.kills, args.during_save, args.max_steps, args.seed)
    print(json.dumps(dict(result, seconds=round(time.perf_counter() - start, 1))))


if __name__ == "__main__":
    main()
