"""What ``fit`` returns: the best model, its validation reward, the search history and how the search ran.

    results = task.fit(dataset, time_limits=600)
    results.reward, results.config, results.metadata['net']
    results.leaderboard().head(3)                   # a pandas DataFrame, best trials first
    results                                         # in Jupyter: an HTML summary
    ind, prob = results.predict('img.jpg')          # array scalars: ind.item(), prob.item()
    results.evaluate(test_dataset)                  # top-1
    results.save('out/model'); same = Results.load('out/model')   # every file's sha256 is checked on load
    fig = results.plot_training_curves('curves.png')   # a matplotlib Figure, also saved
"""
from __future__ import annotations

import os
import math
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxgluon.task.dataset import ImageDataset
from jaxgluon.task.final_model import load_final_model
from jaxgluon.task.pixel_model import is_pixel_model, load_pixel_model
from jaxgluon.train import TrainedModel
from jaxgluon.train.checkpoint import PROBE_EPOCH
from jaxgluon.train.integrity import (MANIFEST_FIELD, MANIFEST_FILE, SavedModelError, check_saved, read_json_file,
                                      validate_json, verify_manifest, write_json, write_manifest)
from jaxgluon.tune.result import (HTML_TOP_TRIALS, dataframe, format_value, html_summary, plot_trials, rank_trials,
                                  status_counts, trial_seconds)

if TYPE_CHECKING:  # optional dependencies: pandas for tables, matplotlib for plots
    import pandas as pd
    from matplotlib.figure import Figure

RESULTS_FILE = "results.json"
MODEL_DIR = "model"
#: What ``results.json`` must hold; the model in ``model/`` is checked by ``load_trained``.
RESULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reward", "config", "metadata", "trials"],
    "properties": {
        "reward": {"type": ["number", "null"]},
        "config": {"type": "object"},
        "metadata": {"type": "object"},
        "trials": {"type": "array", "items": {"type": "object", "required": ["trial_id", "status", "config"]}},
        "experiment_dir": {"type": ["string", "null"]},
        MANIFEST_FIELD: {"const": MANIFEST_FILE},
    },
}


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
    trial's network (a ``jaxgluon.train.TrainedModel``), a refit of its config (averaged with that trial's model
    when fine-tuned), an ensemble of trials (both a ``jaxgluon.task.ensemble.EnsembleModel``), or the kernel model
    on pixels when it validated best (``jaxgluon.task.pixel_model.PixelKernelModel``), as
    ``metadata['final_model']`` says; ``reward`` is the validation top-1 of that model (of the best trial for a
    refit, which has no held-out score)."""

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

    def leaderboard_rows(self) -> list[dict]:
        """``leaderboard()`` as a list of dicts (no pandas needed)."""
        rows = []
        for t in rank_trials(self.trials):
            config = dict(t["config"])
            optimizer = config.get("optimizer")
            best = _best_result(t)
            row = {"trial_id": t["trial_id"], "best_reward": best.get("val_top1", t.get("best_reward")),
                   "val_loss": best.get("val_loss"), "status": t["status"],
                   "epochs": t.get("num_epochs", 0), "seconds": trial_seconds(t), "net": config.get("net"),
                   "optimizer": optimizer.get("name") if isinstance(optimizer, dict) else optimizer}
            if isinstance(optimizer, dict):
                row.update({f"optimizer.{k}": v for k, v in optimizer.items() if k != "name"})
            row["lr_scheduler"] = config.get("lr_scheduler")
            row["final"] = (self.metadata.get("final_model") in ("single", "linear_probe")
                            and t["trial_id"] == self.metadata.get("best_trial_id"))
            row.update({k: v for k, v in config.items() if k not in ("net", "optimizer", "lr_scheduler")})
            row["model"] = "trial"
            row["error"] = t.get("error")
            rows.append(row)
        pixel = self.metadata.get("pixel_model")
        if pixel:   # the kernel model on pixels (jaxgluon.task.pixel_model): first when it is the final model
            row = {"trial_id": None, "best_reward": pixel.get("val_top1"), "val_loss": pixel.get("val_loss"),
                   "status": "COMPLETED", "epochs": None, "seconds": pixel.get("seconds"), "net": pixel.get("model"),
                   "optimizer": None, "lr_scheduler": None, "error": None, "model": "pixel_kernel",
                   "final": self.metadata.get("final_model") == "pixel_kernel"}
            rows.insert(0, row) if self.metadata.get("final_model") == "pixel_kernel" else rows.append(row)
        return rows + self._final_stage_rows()

    def _final_stage_rows(self) -> list[dict]:
        """The refit row (when one ran) and the ensemble row (when selection kept two or more trials), after the
        trials (``model``: 'refit' / 'ensemble'; trials are 'trial'). Skipped ones are in the metadata only."""
        rows = []
        served = self.metadata.get("final_model")
        refit = self.metadata.get("refit")
        if refit and refit.get("status") not in ("skipped", "off"):
            rows.append({"trial_id": refit.get("trial_id"), "model": "refit", "best_reward": None, "val_loss": None,
                         "status": refit.get("status"), "epochs": refit.get("epochs"), "seconds": refit.get("seconds"),
                         "net": self.config.get("net") if refit.get("status") == "completed" else None,
                         "final": served == "refit", "error": refit.get("reason")})
        ensemble = self.metadata.get("ensemble")
        if ensemble and ensemble.get("status") in ("chosen", "not better"):
            members = ensemble.get("members") or []
            rows.append({"trial_id": None, "model": "ensemble", "best_reward": ensemble.get("val_top1"),
                         "val_loss": ensemble.get("val_loss"), "status": ensemble.get("status"),
                         "seconds": ensemble.get("seconds"),
                         "members": ", ".join(_member_label(m) for m in members) or None,
                         "final": served == "ensemble", "error": ensemble.get("reason")})
        return rows

    def leaderboard(self) -> pd.DataFrame:
        """A pandas DataFrame of the trials ranked as the search ranked them (``metadata['metric']``: validation
        top-1 or log-loss; failed trials last), best first: ``trial_id``, ``best_reward`` (validation top-1 of the
        trial's best-ranked epoch), ``val_loss`` (its validation log-loss), ``status``, ``epochs``, ``seconds``, ``net``, ``optimizer`` (its name)
        and one ``optimizer.<hyperparameter>`` column each, ``lr_scheduler``, any other searched setting
        (``batch_size``), ``error``; then ``model``: 'trial' for the trials, after them one 'refit' row when a refit ran
        (``trial_id``: the trial whose config it retrained; no validation score: it trained on the validation
        images; ``error``: why it did not finish) and one 'ensemble' row when selection kept two or more trials
        (its validation top-1 and log-loss, ``members`` as ``trial_id x weight``, ``trial_id(probe)`` for a trial's
        linear-probe model); the kernel model on pixels, when
        ``fit`` ranked one, is a row with ``model == net == 'pixel_kernel'`` and no ``trial_id`` (first when it is
        the final model); ``final`` marks the model ``fit`` serves (``metadata['final_model']``). In a terminal:
        ``print(results.leaderboard().to_string())``; without pandas,
        ``leaderboard_rows()``."""
        rows = self.leaderboard_rows()
        hyper = dict.fromkeys(k for row in rows for k in row if k.startswith("optimizer."))
        first = ["trial_id", "best_reward", "val_loss", "status", "epochs", "seconds", "net", "optimizer", *hyper, "lr_scheduler"]
        frame = dataframe(rows, "Results.leaderboard()", first=first, last=("model", "final", "members", "error"))
        frame["trial_id"] = frame["trial_id"].astype("Int64")   # the ensemble row has none: ints stay ints
        return frame

    # --------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Writes the best model and this summary to a new folder, then its ``manifest.json`` (the sha256 of
        ``results.json`` and of the model's own manifest); :meth:`load` verifies and reads it back."""
        path = pathlib.Path(path).expanduser().absolute()
        if path.exists() and any(path.iterdir()):
            raise ValueError(f"{path} is not empty; save into a new or empty folder")
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / MODEL_DIR)
        summary = {"reward": self.reward, "config": self.config, "metadata": self.metadata, "trials": self.trials,
                   "experiment_dir": self.experiment_dir, MANIFEST_FIELD: MANIFEST_FILE}
        write_json(path / RESULTS_FILE, summary, indent=1, default=_json_default)
        write_manifest(path)
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Results":
        """Reads what :meth:`save` wrote, after checking every file against the manifest (a
        ``jaxgluon.train.integrity.SavedModelError`` names a changed or missing file) and ``results.json`` against
        :data:`RESULTS_SCHEMA`. A folder saved before manifests existed loads with a warning."""
        path = pathlib.Path(path).expanduser().absolute()
        verified = verify_manifest(path)
        if not (path / RESULTS_FILE).is_file():
            if verified:
                raise SavedModelError(f"{path} is not complete: its {RESULTS_FILE} is missing")
            raise FileNotFoundError(f"{path} holds no saved results ({RESULTS_FILE} missing); give the folder "
                                    "that Results.save() wrote")
        summary = read_json_file(path / RESULTS_FILE, "the saved results are corrupt; save them again")
        if not verified:
            check_saved(path, summary, RESULTS_FILE)
        validate_json(summary, RESULTS_SCHEMA, str(path / RESULTS_FILE))
        model_dir = path / MODEL_DIR
        model = load_pixel_model(model_dir) if is_pixel_model(model_dir) else load_final_model(model_dir)
        return cls(summary["reward"], summary["config"], summary["metadata"], summary["trials"], model,
                   summary.get("experiment_dir"))

    # -------------------------------------------------------------------------------------------------- plots
    def plot_pbt(self, path: str | pathlib.Path | None = None, hyperparameter: str | None = None) -> Any:
        """Draws a PBT fit's lineage (who copied whom, when, with which hyperparameters: ``metadata['scheduler']
        ['lineage']``) over the members' validation curves; needs matplotlib."""
        from jaxgluon.tune.lineage import plot_pbt

        return plot_pbt(self.trials, self.metadata.get("scheduler", {}).get("lineage", []), path, hyperparameter)

    def plot_training_curves(self, path: str | pathlib.Path | None = None, *, ax: Any = None) -> Figure:
        """Per-trial validation curves (top-1 vs epoch) and the best-so-far line over time. Returns the matplotlib
        Figure (shown inline when it ends a Jupyter cell) and saves it to ``path`` when given; draws only the
        curves on ``ax`` when given. Needs matplotlib (``pip install matplotlib``)."""
        return plot_trials(self.trials, path, ax=ax, ylabel="validation top-1",
                           label=lambda t: f"trial {t['trial_id']} ({t['config'].get('net')})")

    # ------------------------------------------------------------------------------------------------ display
    def __repr__(self) -> str:
        return (f"Results(reward={self.reward:.4f}, config={self.config}, "
                f"trials={len(self.trials)}, time_used_s={self.metadata.get('time_used_s')})")

    def _repr_html_(self) -> str:
        """Jupyter's view: best validation top-1, its config, how the search ran, the top of the leaderboard."""
        meta, config = self.metadata, self.config
        limit = meta.get("time_limits")
        used = meta.get("time_used_s")
        time_used = None if used is None else f"{used:.1f} s" + ("" if limit is None else f" of {limit:g} s")
        overrun = meta.get("overrun_s")
        fields = [("validation top-1", format_value(self.reward)
                   + ("" if meta.get("best_trial_id") is None else f" (trial {meta['best_trial_id']})")),
                  ("net", config.get("net")), ("optimizer", format_value(config.get("optimizer"))),
                  ("lr_scheduler", config.get("lr_scheduler")),
                  *((k, v) for k, v in config.items() if k not in ("net", "optimizer", "lr_scheduler")),
                  ("image size, batch size, epochs",
                   ", ".join(format_value(meta.get(k)) for k in ("image_size", "batch_size", "epochs"))),
                  ("pretrained", meta.get("pretrained") or None), ("search", meta.get("search_strategy")),
                  ("trials", status_counts(self.trials)), ("time used", time_used),
                  ("overrun", f"{overrun:.1f} s" if overrun else None),
                  ("classes", len(self.synsets)), ("experiment_dir", self.experiment_dir)]
        top = []
        for row in [r for r in self.leaderboard_rows() if r["model"] == "trial"][:HTML_TOP_TRIALS]:
            row = {k: v for k, v in row.items() if not k.startswith("optimizer.") and k not in ("model", "final")}
            trial = next(t for t in self.trials if t["trial_id"] == row["trial_id"])
            row["optimizer"] = format_value(trial["config"].get("optimizer"))
            top.append(row)
        return html_summary("Results", fields, top, len(self.trials))


def _best_result(trial: dict) -> dict:
    """The trial's reported result with the highest reward (the ranking score), or {}."""
    results = [r for r in trial.get("results", []) if r.get("reward") is not None and math.isfinite(r["reward"])]
    return max(results, key=lambda r: r["reward"], default={})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    return repr(obj)


def _member_label(member: dict) -> str:
    """``'3x2'`` for trial 3's fine-tuned model at weight 2, ``'3(probe)x1'`` for its linear-probe model."""
    probe = "(probe)" if member.get("epoch") == PROBE_EPOCH else ""
    return f"{member['trial_id']}{probe}x{member['weight']}"
