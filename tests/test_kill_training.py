"""Resuming training after kill -9 (the short version): 6 steps killed twice, at least once while
a checkpoint is being written, and rerun with the same command after each kill; the final
parameters equal an uninterrupted run's. Every resume is a fresh process restoring the latest
checkpoint. The long version: python tests/kill_training.py --kills 12 --during_save 4 --max_steps 12"""

from __future__ import annotations

import pytest
from kill_training import run


@pytest.mark.slow
def test_training_resumes_after_kill_9(tmp_path, fixture_dir):
    result = run(tmp_path, kills=2, during_save=1, max_steps=6, seed=0)
    assert result["kills"] >= 2 and result["kills_during_save"] >= 1
    assert result["checkpoints_restored"] >= 3  # after each kill and at the end, every checkpoint restores
    assert result["leftovers"] == []
    assert result["max_abs_difference"] <= 1e-6  # the bound of a resumed run
