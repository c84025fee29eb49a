"""Trial functions for the Ray executor tests: sleep + report, state checkpointed to the trial's directory, each
launch (node, pid, start epoch) and each epoch's wall-clock span logged there. Pickled by value (the Ray workers
cannot import this test folder)."""
from __future__ import annotations

import json
import os
import signal
import time


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def sleepy_trial(config: dict, reporter) -> None:
    """Config: 'x' (the final reward grows with it), 'sleep' (seconds per epoch), 'mode' at epoch 2: 'kill' (the
    trial SIGKILLs its own process, on every launch) or 'hang' (it sleeps for an hour)."""
    ckpt = reporter.checkpoint_dir
    state_file = ckpt / "state.json"
    start = json.loads(state_file.read_text())["epoch"] if state_file.exists() else 0
    with open(ckpt / "launches.jsonl", "a") as f:
        f.write(json.dumps({"start_epoch": start, "node_id": node_id(), "pid": os.getpid(),
                            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "t": time.time()}) + "\n")
    for epoch in range(start + 1, reporter.max_epochs + 1):
        t0 = time.time()
        time.sleep(config.get("sleep", 0.0))
        if epoch == 2 and config.get("mode") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if epoch == 2 and config.get("mode") == "hang":
            time.sleep(3600)
        state_file.write_text(json.dumps({"epoch": epoch}))
        with open(ckpt / "epochs.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, "t0": t0, "t1": time.time(), "node_id": node_id()}) + "\n")
        decision = reporter(epoch=epoch, reward=config["x"] * (1.0 - 0.5 ** epoch))
        if decision != "CONTINUE":
            return


class Blocker:
    """A Ray actor that holds a node's CPU (so that trials start on the other node)."""

    def ping(self) -> int:
        return 1
