"""Training of both stages: losses of a step, data-parallel steps, checkpoints, logging."""
