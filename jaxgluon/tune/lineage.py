"""PBT lineage: who copied whom, when, with what hyperparameters -- and a plot of it.

A lineage entry (``PBTScheduler.lineage``, ``ExperimentResult.metadata['scheduler']['lineage']``) is
``{'exploit', 'trial_id', 'epoch', 'reward', 'source_trial_id', 'source_epoch', 'source_reward',
'config_before', 'config'}``: at epoch ``epoch`` trial ``trial_id`` (reward ``reward``) took the weights of
``source_trial_id`` at ``source_epoch`` and continued with ``config``.
"""
from __future__ import annotations

import pathlib
from typing import Any, Sequence


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def explored_hyperparameter(lineage: Sequence[dict]) -> str | None:
    """The numeric hyperparameter (flattened name, e.g. 'optimizer.learning_rate') that exploits changed most
    often, or None.

    >>> explored_hyperparameter([{'config_before': {'o': {'lr': 0.1}, 'n': 'a'},
    ...                           'config': {'o': {'lr': 0.12}, 'n': 'a'}}])
    'o.lr'
    """
    counts: dict[str, int] = {}
    for entry in lineage:
        before, after = _flat(entry["config_before"]), _flat(entry["config"])
        for key, value in after.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and before.get(key) != value:
                counts[key] = counts.get(key, 0) + 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None


def plot_pbt(trials: Sequence[dict], lineage: Sequence[dict], path: str | pathlib.Path | None = None,
             hyperparameter: str | None = None) -> Any:
    """Reward curves of every member with each exploit drawn as a dashed jump from its source, and (below) the
    explored hyperparameter of each member over epochs. Saved to ``path`` when given; returns the figure.
    Needs matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("plot_pbt needs matplotlib: pip install matplotlib") from err
    hyperparameter = hyperparameter or explored_hyperparameter(lineage)
    fig = Figure(figsize=(10, 7 if hyperparameter else 4))
    ax = fig.add_subplot(2 if hyperparameter else 1, 1, 1)
    colors = {t["trial_id"]: f"C{i % 10}" for i, t in enumerate(trials)}
    for t in trials:
        if t.get("rewards"):
            ax.plot(t.get("epochs") or range(1, len(t["rewards"]) + 1), t["rewards"], marker="o", ms=3,
                    color=colors[t["trial_id"]], label=f"trial {t['trial_id']}")
    for entry in lineage:
        color = colors.get(entry["trial_id"], "k")
        ax.plot([entry["epoch"], entry["source_epoch"]], [entry["reward"], entry["source_reward"]], ls="--",
                color=color, alpha=0.6)
        ax.plot([entry["epoch"]], [entry["reward"]], marker="x", color=color, ms=8)
    ax.set_ylabel("reward (validation top-1)")
    ax.set_title(f"PBT: {len(lineage)} exploits (x: exploiting member, dashed: to the copied member)")
    if len(trials) <= 16:
        ax.legend(fontsize=7, ncol=2)
    if hyperparameter:
        hx = fig.add_subplot(2, 1, 2, sharex=ax)
        for t in trials:
            changes = sorted((e for e in lineage if e["trial_id"] == t["trial_id"]), key=lambda e: e["exploit"])
            first = changes[0]["config_before"] if changes else t["config"]
            value = _flat(first).get(hyperparameter)
            if value is None:
                continue
            last_epoch = max(t.get("epochs") or [1])
            xs, ys = [0], [value]
            for e in changes:
                xs.append(e["source_epoch"])
                ys.append(_flat(e["config"]).get(hyperparameter, ys[-1]))
            xs.append(last_epoch)
            ys.append(ys[-1])
            hx.step(xs, ys, where="post", color=colors[t["trial_id"]])
        hx.set_ylabel(hyperparameter)
        hx.set_xlabel("epoch")
        if "learning_rate" in hyperparameter or "lr" in hyperparameter.split(".")[-1]:
            hx.set_yscale("log")
    else:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
