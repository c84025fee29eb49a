"""What an experiment returns: the best config, every trial as a dict, and how the run went.

    >>> r = ExperimentResult(best_config={'x': 1}, best_reward=0.9, best_trial_id=0,
    ...                      trials=[{'trial_id': 0, 'config': {'x': 1}, 'status': 'COMPLETED', 'rewards': [0.9]}],
    ...                      metadata={}, experiment_dir=None)
    >>> r.best_reward
    0.9

In Jupyter a result displays itself as a short HTML summary (``_repr_html_``); ``leaderboard()`` and
``to_dataframe()`` are pandas DataFrames; ``plot_training_curves()`` returns a matplotlib Figure. The helpers
below (``rank_trials``, ``html_summary``, ``plot_trials``) serve ``jaxgluon.task.Results`` as well.
"""
from __future__ import annotations

import dataclasses
import html
import math
import pathlib
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # optional dependencies: pandas for tables, matplotlib for plots
    import pandas as pd
    from matplotlib.figure import Figure

#: Trials shown in the HTML summary's leaderboard.
HTML_TOP_TRIALS = 5


class AllTrialsFailedError(RuntimeError):
    """Every trial of the experiment ended in ERROR; the message carries the first failure's traceback."""


@dataclasses.dataclass
class ExperimentResult:
    """``best_config``/``best_reward``/``best_trial_id``: the trial with the highest reported reward (any epoch;
    ``trials[i]['reward']`` is each trial's last reward, ``['best_reward']`` its highest). ``trials``: one dict
    per trial (``trial_id``, ``config``, ``status``: the value of a :class:`~jaxgluon.scheduler.TrialStatus`,
    COMPLETED/STOPPED/PAUSED/ERROR (``jaxgluon.tune.lifecycle`` says when), ``rewards`` per reported
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

    def to_dataframe(self) -> pd.DataFrame:
        """One row per trial: ``trial_id``, ``status``, ``reward`` (last), ``best_reward``, ``num_epochs``, times,
        ``error``, the rewards list, and one ``config.<name>`` column per (flattened) hyperparameter."""
        rows = []
        for trial in self.trials:
            row = {key: trial.get(key) for key in ("trial_id", "status", "reward", "best_reward", "num_epochs",
                                                     "start_time_s", "end_time_s", "error")}
            row["rewards"] = list(trial.get("rewards", []))
            row.update({f"config.{k}": v for k, v in _flatten(trial.get("config", {})).items()})
            rows.append(row)
        return dataframe(rows, "ExperimentResult.to_dataframe()")

    def leaderboard_rows(self) -> list[dict]:
        """``leaderboard()`` as a list of dicts (no pandas needed)."""
        rows = []
        for trial in rank_trials(self.trials):
            row = {"trial_id": trial["trial_id"], "best_reward": trial.get("best_reward"),
                   "reward": trial.get("reward"), "status": trial.get("status"),
                   "epochs": trial.get("num_epochs", 0), "seconds": trial_seconds(trial)}
            row.update({f"config.{k}": v for k, v in _flatten(trial.get("config", {})).items()})
            row["error"] = trial.get("error")
            rows.append(row)
        return rows

    def leaderboard(self) -> pd.DataFrame:
        """A pandas DataFrame of the trials, best first (by their best reward; failed trials last): ``trial_id``,
        ``best_reward``, ``reward`` (last), ``status``, ``epochs``, ``seconds`` (start to end), one ``config.<name>``
        column per (flattened) hyperparameter, ``error``. ``print(result.leaderboard().to_string())`` in a terminal."""
        return dataframe(self.leaderboard_rows(), "ExperimentResult.leaderboard()", last=("error",))

    def plot_training_curves(self, path: str | pathlib.Path | None = None, *, ax: Any = None) -> Figure:
        """Reward vs epoch per trial, and the best reward so far over time; returns the matplotlib Figure (shown
        inline in Jupyter) and saves it to ``path`` when given. Needs matplotlib."""
        return plot_trials(self.trials, path, ax=ax, ylabel="reward")

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

    def _repr_html_(self) -> str:
        meta = self.metadata
        best = "-" if self.best_reward is None else f"{format_value(self.best_reward)} (trial {self.best_trial_id})"
        fields = [("best reward", best), ("best config", format_value(self.best_config)),
                  ("search", meta.get("search_strategy")), ("stopped by", meta.get("stop_reason")),
                  ("trials", status_counts(self.trials)), ("time used", _seconds(meta.get("time_used_s"))),
                  ("overrun", _seconds(meta.get("overrun_s")) if meta.get("overrun_s") else None),
                  ("workers", meta.get("num_workers")), ("experiment_dir", self.experiment_dir)]
        return html_summary("ExperimentResult", fields, self.leaderboard_rows()[:HTML_TOP_TRIALS], len(self.trials))


# ------------------------------------------------------------------------------------------- shared helpers
def rank_trials(trials: Sequence[dict]) -> list[dict]:
    """Trials by best reward, highest first; those without a reward (failed, or none reported) last; ties by id."""
    def key(t: dict) -> tuple:
        best = t.get("best_reward")
        missing = best is None or not math.isfinite(best)
        return (missing, 0.0 if missing else -best, t["trial_id"])
    return sorted(trials, key=key)


def trial_seconds(trial: dict) -> float | None:
    """Seconds from a trial's first start to its last end (None while it has not ended)."""
    start, end = trial.get("start_time_s"), trial.get("end_time_s")
    return None if start is None or end is None else end - start


def format_value(value: Any) -> str:
    """A short human-readable form: 4 significant digits, ``name(k=v, ...)`` for named dicts, ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        items = dict(value)
        name = items.pop("name", None)
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in items.items())
        return f"{name}({inner})" if isinstance(name, str) else inner
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars
        return format_value(value.item())
    return str(value)


def html_summary(title: str, fields: Sequence[tuple[str, Any]], top_rows: Sequence[dict], num_trials: int) -> str:
    """The HTML that ``_repr_html_`` shows: a title, a table of ``(label, value)`` fields (None values left out),
    and the top rows of the leaderboard. Every value is escaped."""
    esc = html.escape
    parts = [f'<div class="jaxgluon-result"><strong>{esc(title)}</strong>', "<table>"]
    for label, value in fields:
        if value is None:
            continue
        shown = value if isinstance(value, str) else format_value(value)
        parts.append(f'<tr><th style="text-align:left">{esc(label)}</th>'
                     f'<td style="text-align:left">{esc(shown)}</td></tr>')
    parts.append("</table>")
    if top_rows:
        columns = [c for c in _columns(top_rows) if any(r.get(c) is not None for r in top_rows)]
        parts.append(f"<p>Top {len(top_rows)} of {num_trials} trials (<code>leaderboard()</code>):</p><table>")
        parts.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>")
        for row in top_rows:
            parts.append("<tr>" + "".join(f"<td>{esc(format_value(row.get(c)))}</td>" for c in columns) + "</tr>")
        parts.append("</table>")
    parts.append("</div>")
    return "\n".join(parts)


def plot_trials(trials: Sequence[dict], path: str | pathlib.Path | None = None, *, ax: Any = None,
                ylabel: str = "reward", label: Callable[[dict], str] | None = None) -> Figure:
    """Per-trial curves (reward vs epoch) and, unless ``ax`` is given, the best reward so far over time beside
    them. Returns the matplotlib Figure: displayed inline when it ends a Jupyter cell (once: it is not left open
    in pyplot for the inline backend to show again), saved to ``path`` when given. Draws on ``ax`` when given."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from err
    label = label or (lambda t: f"trial {t['trial_id']}")
    if ax is None:
        fig, (ax, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
        own = True
    else:
        fig, ax_time, own = ax.figure, None, False
    for t in trials:
        if t.get("rewards"):
            ax.plot(t.get("epochs") or range(1, len(t["rewards"]) + 1), t["rewards"], marker="o", ms=3,
                    alpha=0.7, label=label(t))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("trials")
    if 0 < len(trials) <= 12:
        ax.legend(fontsize=7)
    if ax_time is not None:
        times, best = _best_so_far(trials)
        ax_time.step(times, best, where="post")
        ax_time.set_xlabel("seconds since the search started")
        ax_time.set_ylabel(f"best {ylabel} so far")
        ax_time.set_title("best so far")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    if own and (path is not None or _in_jupyter()):
        # Saved, or shown by being returned: closing keeps scripts from piling up open figures (pyplot warns past
        # 20) and keeps Jupyter's inline backend from drawing the figure a second time at the end of the cell.
        plt.close(fig)
    return fig


# ------------------------------------------------------------------------------------------------- private
def _best_so_far(trials: Sequence[dict]) -> tuple[list[float], list[float]]:
    events = sorted((r["time_s"], r["reward"]) for t in trials for r in t.get("results", [])
                    if r.get("reward") is not None and r.get("time_s") is not None and math.isfinite(r["reward"]))
    times, best, current = [], [], -math.inf
    for time_s, reward in events:
        current = max(current, reward)
        times.append(time_s)
        best.append(current)
    return times, best


def _in_jupyter() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _columns(rows: Sequence[dict]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def status_counts(trials: Sequence[dict]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.get("status", "?")] = counts.get(t.get("status", "?"), 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in counts.items()) or "none"


def _seconds(value: Any) -> str | None:
    return None if value is None else f"{value:.1f} s"


def dataframe(rows: list[dict], what: str, first: Sequence[str] = (), last: Sequence[str] = ()) -> pd.DataFrame:
    """``rows`` as a pandas DataFrame: the ``first`` columns, the others in order of first appearance, then the
    ``last`` ones (those absent from every row left out); or a clear ImportError saying ``what`` needs pandas."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(f"{what} needs pandas (`pip install pandas`); the same data is available without it as "
                          "a list of dicts (`trials`, `leaderboard_rows()`)") from err
    seen = _columns(rows)
    columns = [c for c in first if c in seen] + [c for c in seen if c not in first and c not in last]
    columns += [c for c in last if c in seen]
    return pd.DataFrame(rows, columns=columns)


def _flatten(config: dict, prefix: str = "") -> dict:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
