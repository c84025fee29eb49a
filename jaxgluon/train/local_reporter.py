"""The trial-function reporter for a run in this process that nothing stops early (a refit, a cross-validation
fold, an experiment script): it records each result and always answers CONTINUE.

    reporter = LocalReporter(directory, max_epochs=3, trial_id="refit", deadline=time.time() + 60)
    train_trial(config, reporter, spec)
    reporter.results          # one dict per reported epoch
"""
from __future__ import annotations

import pathlib
from typing import Any


class LocalReporter:
    """Records every result ``train_trial`` reports; ``trial_id`` names the run in its logs."""

    def __init__(self, checkpoint_dir: pathlib.Path, max_epochs: int, *, seed: int = 0,
                 deadline: float | None = None, trial_id: Any = "local"):
        self.trial_id, self.checkpoint_dir, self.max_epochs, self.seed = trial_id, checkpoint_dir, max_epochs, seed
        self.deadline = deadline
        self.results: list[dict] = []

    def __call__(self, **result: Any) -> str:
        self.results.append(result)
        return "CONTINUE"
