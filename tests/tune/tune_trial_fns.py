"""Trial functions and a list searcher for the runner tests (module-level: worker processes unpickle them)."""
from __future__ import annotations

import json
import os
import signal
import time


def curve(x: float, epoch: int) -> float:
    """A learning curve whose final value grows with x."""
    return x * (1.0 - 0.5 ** epoch)


def scripted_trial(config: dict, reporter) -> None:
    """Trains 'epochs' of a fake model whose state (the epoch) lives in reporter.checkpoint_dir.

    Config keys besides 'x': sleep (seconds per epoch), fail_at / nan_at / kill_at / hang_at (an epoch),
    interrupt_at (an epoch: Ctrl-C in the driver, first launch only), forever (ignore max_epochs), exit_at (an
    epoch: os._exit(3)), stall_at (an epoch: sleeps 60 s, first launch only). Every finished epoch is appended to
    epochs.log (with the pid) before it is reported.
    """
    state_file = reporter.checkpoint_dir / "state.json"
    start = json.loads(state_file.read_text())["epoch"] if state_file.exists() else 0
    with open(reporter.checkpoint_dir / "launches.jsonl", "a") as f:
        f.write(json.dumps({"start_epoch": start, "checkpoint_dir": str(reporter.checkpoint_dir),
                            "pid": os.getpid(), "affinity": sorted(os.sched_getaffinity(0)),
                            "omp": os.environ.get("OMP_NUM_THREADS"), "seed": reporter.seed}) + "\n")
    first_launch = len((reporter.checkpoint_dir / "launches.jsonl").read_text().splitlines()) == 1
    epoch = start
    while config.get("forever") or epoch < reporter.max_epochs:
        epoch += 1
        time.sleep(config.get("sleep", 0.0))
        if epoch == config.get("fail_at"):
            raise ZeroDivisionError(f"planned failure at epoch {epoch}")
        if epoch == config.get("kill_at"):
            os.kill(os.getpid(), signal.SIGKILL)
        if epoch == config.get("interrupt_at") and first_launch:
            raise KeyboardInterrupt
        if epoch == config.get("hang_at"):
            time.sleep(3600)
        if epoch == config.get("exit_at"):
            os._exit(3)
        if epoch == config.get("stall_at") and first_launch:
            time.sleep(60)
        reward = float("nan") if epoch == config.get("nan_at") else curve(config["x"], epoch)
        state_file.write_text(json.dumps({"epoch": epoch}))
        with open(reporter.checkpoint_dir / "epochs.log", "a") as f:
            f.write(f"{epoch} {os.getpid()}\n")
        if reporter(epoch=epoch, reward=reward, train_loss=1.0 / epoch) != "CONTINUE":
            return


def quadratic_trial(config: dict, reporter) -> None:
    """A plain python objective with its optimum at x = 0.3, y = 'b'; noise-free, improves with epochs."""
    quality = 1.0 - (config["x"] - 0.3) ** 2 - (0.0 if config["y"] == "b" else 0.2)
    for epoch in range(1, reporter.max_epochs + 1):
        if reporter(epoch=epoch, reward=quality - 0.1 / epoch) != "CONTINUE":
            return


class ListSearcher:
    """Hands out the given configs in order and records every call it receives (a real, deterministic searcher)."""

    mode = "max"

    def __init__(self, configs: list[dict]) -> None:
        self.configs = [dict(c) for c in configs]
        self.count = 0
        self.completed: dict[int, float] = {}
        self.errors: list[int] = []
        self.results: list[tuple[int, float, int]] = []

    def suggest(self, trial_id=None):
        if self.count >= len(self.configs):
            return None
        self.count += 1
        return dict(self.configs[self.count - 1])

    def on_trial_result(self, trial_id, config, reward, resource):
        self.results.append((trial_id, reward, resource))

    def on_trial_complete(self, trial_id, config, reward):
        self.completed[trial_id] = reward

    def on_trial_error(self, trial_id, config):
        self.errors.append(trial_id)

    def state_dict(self):
        return {"count": self.count, "completed": {str(k): v for k, v in self.completed.items()},
                "errors": self.errors, "results": self.results}

    def load_state_dict(self, state):
        self.count = state["count"]
        self.completed = {int(k): v for k, v in state["completed"].items()}
        self.errors = list(state["errors"])
        self.results = [tuple(r) for r in state["results"]]


def valued_trial(config: dict, reporter, value: float) -> None:
    """One epoch reporting ``value`` and the pid of the process that ran it (for worker-reuse tests)."""
    reporter(epoch=1, reward=value, pid=float(os.getpid()))
