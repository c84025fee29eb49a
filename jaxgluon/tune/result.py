"""What an experiment returns: the best config, every trial as a dict, and how the run went.

    >>> r = ExperimentResult(best_config={'x': 1}, best_reward=0.9, best_trial_id=0,
    ...                      trials=[{'trial_id': 0, 'config': {'x': 1}, 'status': 'COMPLETED', 'rewards': [0.9]}],
    ...                      metadata={}, experiment_dir=None)
    >>> r.best_reward
    0.9
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any


class AllTrialsFailedError(RuntimeError):
    """Every trial of the experiment ended in ERROR; the message carries the first failure's traceback."""


@dataclasses.dataclass
class ExperimentResult:
    """``best_config``/``best_reward``/``best_trial_id``: the trial with the highest reported reward (any epoch;
    ``trials[i]['reward']`` is each trial's last reward, ``['best_reward']`` its highest). ``trials``: one dict
    per trial (``trial_id``, ``config``, ``status`` in COMPLETED/STOPPED/PAUSED/ERROR, ``rewards`` per reported
    epoch, ``error``, ``traceback``, times in seconds since the experiment started). ``metadata``: search
    strategy, stop criterion, resources per trial, time used, overrun past the time limit, trials by status."""

    best_config: dict | None
    best_reward: float | None
    best_trial_id: int | None
    trials: list[dict]
    metadata: dict
    experiment_dir: pathlib.Path | None

    def checkpoint_dir(self, trial_id: int | None = None) -> pathlib.Path | None:
        """The checkpoint_dir a trial's function was given (default: the best trial's); None without one."""
        trial_id = self.best_trial_id if trial_id is None else trial_id
        if trial_id is None or self.experiment_dir is None:
            return None
        return pathlib.Path(self.experiment_dir) / "trials" / str(trial_id)

    def to_dataframe(self) -> Any:
        """One row per trial: ``trial_id``, ``status``, ``reward`` (last), ``best_reward``, ``num_epochs``, times,
        ``error``, the rewards list, and one ``config.<name>`` column per (flattened) hyperparameter."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("ExperimentResult.to_dataframe() needs pandas (`pip install pandas`); "
                              "ExperimentResult.trials holds the same data as a list of dicts") from err
        rows = []
        for trial in self.trials:
            row = {key: trial.get(key) for key in ("trial_id", "status", "reward", "best_reward", "num_epochs",
                                                     "start_time_s", "end_time_s", "error")}
            row["rewards"] = list(trial.get("rewards", []))
            row.update({f"config.{k}": v for k, v in _flatten(trial.get("config", {})).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def lineage(self) -> list[dict]:
        """PBT's lineage (``jaxgluon.tune.lineage``): one entry per exploit; empty for other schedulers."""
        return list(self.metadata.get("scheduler", {}).get("lineage", []))

    def plot_pbt(self, path: str | pathlib.Path | None = None, hyperparameter: str | None = None) -> Any:
        """Draws the PBT lineage (reward curves, exploits, the explored hyperparameter); needs matplotlib."""
        from jaxgluon.tune.lineage import plot_pbt

        return plot_pbt(self.trials, self.lineage, path, hyperparameter)

    def __repr__(self) -> str:
        by_status = self.metadata.get("num_trials_by_status", {})
        return (f"ExperimentResult(best_reward={self.best_reward}, best_config={self.best_config}, "
                f"trials={len(self.trials)} {by_status}, experiment_dir='{self.experiment_dir}')")


def _flatten(config: dict, prefix: str = "") -> dict:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
