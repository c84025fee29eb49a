"""The toy problem of the PBT paper (Jaderberg et al. 2017, figure 2), driven through PBTScheduler.

Maximise Q(theta) = 1.2 - (theta0^2 + theta1^2) by gradient ascent on the surrogate
Q_hat(theta | h) = 1.2 - (h0 theta0^2 + h1 theta1^2): the hyperparameters h decide which coordinates the steps
shrink. Two members start at theta = (0.9, 0.9); each epoch is ``STEPS_PER_EPOCH`` gradient steps, then the member
reports Q(theta). A PAUSE is an exploit: the member copies its source's theta (the clone instruction of the
resume suggestion) and takes the explored h.
"""
from __future__ import annotations

import numpy as np

from jaxgluon.scheduler import PBTScheduler, Trial
from jaxgluon.space import Real

SPACE = {"h0": Real(0.0, 1.0), "h1": Real(0.0, 1.0)}
THETA0 = (0.9, 0.9)
STEP_SIZE = 0.02
STEPS_PER_EPOCH = 4
PAPER_INITIAL_H = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})


def q(theta: np.ndarray) -> float:
    return float(1.2 - np.sum(theta ** 2))


def _steps(theta: np.ndarray, config: dict) -> np.ndarray:
    h = np.array([config["h0"], config["h1"]])
    for _ in range(STEPS_PER_EPOCH):
        theta = theta + STEP_SIZE * (-2.0 * h * theta)   # gradient ascent on Q_hat
    return theta


def run_fixed(configs, epochs: int) -> float:
    """Grid or random search: each config trains alone for ``epochs``; the best final Q."""
    best = -np.inf
    for config in configs:
        theta = np.array(THETA0)
        for _ in range(epochs):
            theta = _steps(theta, config)
        best = max(best, q(theta))
    return best


def run_pbt(configs, epochs: int, seed: int = 0, **options) -> tuple[float, PBTScheduler]:
    """The same members and steps, with PBT's exploit/explore after every epoch; the best final Q."""
    scheduler = PBTScheduler(SPACE, seed=seed, quantile_fraction=0.5, **options)
    thetas, configs_now, epochs_done = {}, {}, {}
    for tid, config in enumerate(configs):
        scheduler.on_trial_add(Trial(tid, dict(config)))
        thetas[tid], configs_now[tid], epochs_done[tid] = np.array(THETA0), dict(config), 0
    for _ in range(epochs):                      # equal steps: every member makes `epochs` epochs of steps
        for tid in sorted(thetas):
            thetas[tid] = _steps(thetas[tid], configs_now[tid])
            epochs_done[tid] += 1
            decision = scheduler.on_trial_result(Trial(tid, configs_now[tid]),
                                                 {"epoch": epochs_done[tid], "reward": q(thetas[tid])})
            if decision == "PAUSE":
                suggestion = scheduler.suggest()
                assert suggestion.kind == "resume" and suggestion.trial_id == tid
                clone = suggestion.config["pbt_clone"]
                assert clone["epoch"] == epochs_done[clone["trial_id"]]
                thetas[tid] = thetas[clone["trial_id"]].copy()      # exploit: copy the source's weights
                epochs_done[tid] = clone["epoch"]
                configs_now[tid] = {k: v for k, v in suggestion.config.items() if k != "pbt_clone"}
    return max(q(t) for t in thetas.values()), scheduler
