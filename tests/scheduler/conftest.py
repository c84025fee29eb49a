"""A tiny in-test searcher so scheduler tests do not depend on the real searchers."""
from __future__ import annotations

import pytest


class ListSearcher:
    """Hands out configs {'x': 0}, {'x': 1}, ... and records every call it receives."""

    def __init__(self, limit: int | None = None, mode: str = "max") -> None:
        self.mode = mode
        self.limit = limit
        self.count = 0
        self.pending: set[int] = set()
        self.results: list[tuple[int, float, int]] = []
        self.completed: dict[int, float] = {}
        self.errors: list[int] = []

    def suggest(self, trial_id=None):
        if self.limit is not None and self.count >= self.limit:
            return None
        config = {"x": self.count}
        self.count += 1
        if trial_id is not None:
            self.pending.add(trial_id)
        return config

    def on_trial_result(self, trial_id, config, reward, resource):
        self.results.append((trial_id, reward, resource))

    def on_trial_complete(self, trial_id, config, reward):
        self.pending.discard(trial_id)
        self.completed[trial_id] = reward

    def on_trial_error(self, trial_id, config):
        self.pending.discard(trial_id)
        self.errors.append(trial_id)

    def state_dict(self):
        return {"count": self.count, "pending": sorted(self.pending), "results": self.results,
                "completed": {str(k): v for k, v in self.completed.items()}, "errors": self.errors}

    def load_state_dict(self, state):
        self.count = state["count"]
        self.pending = set(state["pending"])
        self.results = [tuple(r) for r in state["results"]]
        self.completed = {int(k): v for k, v in state["completed"].items()}
        self.errors = list(state["errors"])


@pytest.fixture
def list_searcher():
    return ListSearcher
