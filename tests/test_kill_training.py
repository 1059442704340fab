"""kill -9 during training, the short version: 2 kills (at least 1 while a checkpoint is being
written), each followed by the same command; the final parameters equal an uninterrupted run's.
The long version: python tests/kill_training.py --kills 12 --during_save 4 --max_steps 12"""
from __future__ import annotations

from kill_training import run


def test_training_survives_kill_9(tmp_path, uninterrupted_training):
    result = run(tmp_path, kills=2, during_save=1, max_steps=6, seed=0, reference=uninterrupted_training)
    assert result["kills"] >= 2 and result["kills_during_save"] >= 1
    assert result["checkpoints_restored"] >= 3  # after each kill and at the end, every checkpoint restores
    assert result["leftovers"] == []
    assert result["max_abs_difference"] <= 1e-6
