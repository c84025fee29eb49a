"""A toy population train function for the population-executor tests: no JAX, so the runner paths are fast.

A member's "weights" are one number w, trained by w += lr per epoch; its reward is w / (1 + w) (finite; a
negative lr diverges: the member fails). State is checkpointed as JSON per epoch in checkpoint_dir, so restarts,
promotions and clones through checkpoints work like the real thing.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import signal
import time


def _save(directory: pathlib.Path, epoch: int, w: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{epoch}.json").write_text(json.dumps({"epoch": epoch, "w": w}))


def _latest(directory: pathlib.Path) -> dict | None:
    files = sorted(directory.glob("*.json"), key=lambda p: int(p.stem)) if directory.exists() else []
    return json.loads(files[-1].read_text()) if files else None


class ToyPopulation:
    """The population protocol on plain floats; records what it did in class-level logs."""

    log: list[tuple] = []

    def __init__(self, capacity: int, max_epochs: int, key: str, sleep: float = 0.0, die_after_saving: int = 0):
        self.capacity, self.max_epochs, self.key, self.sleep = capacity, max_epochs, key, sleep
        self.die_after_saving = die_after_saving  # SIGKILL this process once that epoch's checkpoints are written
        self.slots: list[dict | None] = [None] * capacity
        ToyPopulation.log.append(("build", key, capacity))

    @property
    def members(self) -> dict[int, int]:
        return {m["trial_id"]: k for k, m in enumerate(self.slots) if m is not None}

    def add(self, trial_id, config, checkpoint_dir, seed, max_epochs=None, deadline=None, reported_epoch=None):
        slot = self.slots.index(None)
        directory = pathlib.Path(checkpoint_dir) / "toy"
        if reported_epoch is not None and directory.exists():  # never resume past the trial's last report
            for path in directory.glob("*.json"):
                if int(path.stem) > reported_epoch:
                    path.unlink()
        own, clone = _latest(directory), config.get("pbt_clone")
        how = "fresh"
        if own is not None and (clone is None or own.get("exploit") == clone["exploit"]):
            epoch, w, how = own["epoch"], own["w"], "own checkpoint"
        elif clone is not None:
            src = self.members.get(clone["trial_id"])
            if src is not None and self.slots[src]["epoch"] == clone["epoch"]:
                w, how = self.slots[src]["w"], "in-memory"
            else:
                path = pathlib.Path(checkpoint_dir).parent / str(clone["trial_id"]) / "toy" / f"{clone['epoch']}.json"
                w, how = json.loads(path.read_text())["w"], "checkpoint"
            epoch = clone["epoch"]
        else:
            epoch, w = 0, 0.0
        self.slots[slot] = {"trial_id": trial_id, "lr": config["lr"], "epoch": epoch, "w": w, "dir": directory,
                            "exploit": None if clone is None else clone["exploit"]}
        ToyPopulation.log.append(("add", trial_id, slot, how, epoch))
        return slot

    def remove(self, trial_id):
        self.slots[self.members[trial_id]] = None

    def close(self):
        self.slots = [None] * self.capacity

    def run_epoch(self, deadline=None):
        time.sleep(self.sleep)
        if deadline is not None and time.time() >= deadline:
            return None
        ToyPopulation.log.append(("epoch", self.key, sorted(self.members)))
        out = []
        for member in self.slots:
            if member is None:
                continue
            member["epoch"] += 1
            member["w"] += member["lr"]
            if member["w"] < 0 or not math.isfinite(member["w"]):
                out.append((member["trial_id"], f"training diverged at epoch {member['epoch']}"))
                continue
            _save(member["dir"], member["epoch"], member["w"])
            (member["dir"] / f"{member['epoch']}.json").write_text(
                json.dumps({"epoch": member["epoch"], "w": member["w"], "exploit": member["exploit"]}))
            out.append((member["trial_id"], {"epoch": member["epoch"], "reward": member["w"] / (1 + member["w"])}))
        if out and all(m is None or m["epoch"] == self.die_after_saving for m in self.slots):
            os.kill(os.getpid(), signal.SIGKILL)   # checkpointed, never reported
        return out


class ToyPopulationFn:
    """Picklable; ``population_key`` is config['family'] (default 'a'). Also an ordinary trial function."""

    def __init__(self, sleep: float = 0.0, die_after_saving: int = 0):
        self.sleep, self.die_after_saving = sleep, die_after_saving

    def population_key(self, config):
        return config.get("family", "a")

    def make_population(self, config, max_epochs, capacity):
        return ToyPopulation(4 if capacity == "auto" else capacity, max_epochs, self.population_key(config),
                             self.sleep, self.die_after_saving)

    def __call__(self, config, reporter):
        pop = ToyPopulation(1, reporter.max_epochs, self.population_key(config))
        pop.add(reporter.trial_id, config, reporter.checkpoint_dir, reporter.seed,
                reported_epoch=reporter.reported_epoch)
        while True:
            ((_, result),) = pop.run_epoch()
            if isinstance(result, str):
                raise FloatingPointError(result)
            if reporter(**result) != "CONTINUE" or result["epoch"] >= reporter.max_epochs:
                return
