"""What ``fit`` returns: the best model, its validation reward, the search history and how the search ran.

    results = task.fit(dataset, time_limits=600)
    results.reward, results.config, results.metadata['net']
    results.leaderboard()[:3]                       # best trials first
    ind, prob = results.predict('img.jpg')          # array scalars: ind.item(), prob.item()
    results.evaluate(test_dataset)                  # top-1
    results.save('out/model'); same = Results.load('out/model')
    results.plot_training_curves('curves.png')      # needs matplotlib
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from jaxgluon.task.dataset import ImageDataset
from jaxgluon.train import TrainedModel, load_trained

RESULTS_FILE = "results.json"
MODEL_DIR = "model"


def _is_single(images: Any) -> bool:
    """One image (a path, a PIL image, an HxW or HxWxC array) rather than a list or an [N, H, W, C] batch."""
    if isinstance(images, (list, tuple)):
        return False
    if isinstance(images, (str, os.PathLike)) or hasattr(images, "getpixel"):
        return True
    return np.asarray(images).ndim in (2, 3)


class Results:
    """The outcome of a fit. ``reward``: best validation top-1; ``config``: its config; ``trials``: one dict per
    trial (see ``jaxgluon.tune.ExperimentResult``); ``metadata``: how the search ran; ``model``: the best
    trial's network (a ``jaxgluon.train.TrainedModel``)."""

    def __init__(self, reward: float, config: dict, metadata: dict, trials: list[dict], model: TrainedModel,
                 experiment_dir: str | None = None):
        self.reward = reward
        self.config = config
        self.metadata = metadata
        self.trials = trials
        self.model = model
        self.experiment_dir = experiment_dir

    @property
    def synsets(self) -> list[str]:
        return self.model.class_names

    # ------------------------------------------------------------------------------------------------- use
    def predict_proba(self, images: Any) -> np.ndarray:
        """Class probabilities: ``[C]`` for one image (path, PIL image, HxW or HxWxC array), ``[N, C]`` for a
        list of images or an ``[N, H, W, C]`` array."""
        single = _is_single(images)
        probs = self.model.predict_proba([images] if single else images)
        return probs[0] if single else probs

    def predict(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(class index, probability)`` as array scalars for one image, as arrays ``[N]`` for several."""
        probs = self.predict_proba(images)
        ind = np.argmax(probs, axis=-1)
        return np.asarray(ind), np.asarray(np.take_along_axis(probs, np.expand_dims(ind, -1), -1)[..., 0])

    def evaluate(self, dataset: Any) -> float:
        """Top-1 accuracy on a dataset's test data (or on a data source)."""
        source = dataset.test_source if isinstance(dataset, ImageDataset) else dataset  # clear error without one
        return float(self.model.evaluate(source))

    def leaderboard(self) -> list[dict]:
        """Trials ranked by their best validation reward (failed trials last), one summary dict each."""
        rows = []
        for t in self.trials:
            best = t.get("best_reward")
            rows.append({"trial_id": t["trial_id"], "best_reward": best, "status": t["status"],
                         "epochs": t.get("num_epochs", 0), "net": t["config"].get("net"),
                         "optimizer": t["config"].get("optimizer"), "lr_scheduler": t["config"].get("lr_scheduler"),
                         "error": t.get("error")})
        return sorted(rows, key=lambda r: (r["best_reward"] is None, -(r["best_reward"] or 0.0), r["trial_id"]))

    # --------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Writes the best model and this summary to a new folder; :meth:`load` reads it back."""
        path = pathlib.Path(path).expanduser().absolute()
        if path.exists() and any(path.iterdir()):
            raise ValueError(f"{path} is not empty; save into a new or empty folder")
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / MODEL_DIR)
        summary = {"reward": self.reward, "config": self.config, "metadata": self.metadata, "trials": self.trials,
                   "experiment_dir": self.experiment_dir}
        (path / RESULTS_FILE).write_text(json.dumps(summary, indent=1, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Results":
        path = pathlib.Path(path).expanduser().absolute()
        if not (path / RESULTS_FILE).is_file():
            raise FileNotFoundError(f"{path} holds no saved results ({RESULTS_FILE} missing); give the folder "
                                    "that Results.save() wrote")
        summary = json.loads((path / RESULTS_FILE).read_text())
        return cls(summary["reward"], summary["config"], summary["metadata"], summary["trials"],
                   load_trained(path / MODEL_DIR), summary.get("experiment_dir"))

    # -------------------------------------------------------------------------------------------------- plots
    def plot_pbt(self, path: str | pathlib.Path | None = None, hyperparameter: str | None = None) -> Any:
        """Draws a PBT fit's lineage (who copied whom, when, with which hyperparameters: ``metadata['scheduler']
        ['lineage']``) over the members' validation curves; needs matplotlib."""
        from jaxgluon.tune.lineage import plot_pbt

        return plot_pbt(self.trials, self.metadata.get("scheduler", {}).get("lineage", []), path, hyperparameter)

    def plot_training_curves(self, path: str | pathlib.Path | None = None, *, ax: Any = None) -> Any:
        """Per-trial validation curves (reward vs epoch) and the best-so-far line over time; saved to ``path``
        when given. Needs matplotlib (``pip install matplotlib``)."""
        try:
            import matplotlib
            if path is not None and ax is None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError("plot_training_curves needs matplotlib: pip install matplotlib") from err
        if ax is None:
            fig, (ax, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
        else:
            fig, ax_time = ax.figure, None
        for t in self.trials:
            if t.get("rewards"):
                ax.plot(t.get("epochs") or range(1, len(t["rewards"]) + 1), t["rewards"], marker="o", ms=3,
                        alpha=0.7, label=f"trial {t['trial_id']} ({t['config'].get('net')})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation top-1")
        ax.set_title("trials")
        if len(self.trials) <= 12:
            ax.legend(fontsize=7)
        if ax_time is not None:
            times, best = _best_so_far(self.trials)
            ax_time.step(times, best, where="post")
            ax_time.set_xlabel("seconds since the search started")
            ax_time.set_ylabel("best validation top-1 so far")
            ax_time.set_title("best so far")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig

    def __repr__(self) -> str:
        return (f"Results(reward={self.reward:.4f}, config={self.config}, "
                f"trials={len(self.trials)}, time_used_s={self.metadata.get('time_used_s')})")


def _best_so_far(trials: Sequence[dict]) -> tuple[list[float], list[float]]:
    events = sorted((r["time_s"], r["reward"]) for t in trials for r in t.get("results", [])
                    if r.get("reward") is not None and math.isfinite(r["reward"]))
    times, best, current = [], [], -math.inf
    for time_s, reward in events:
        current = max(current, reward)
        times.append(time_s)
        best.append(current)
    return times, best


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    return repr(obj)
