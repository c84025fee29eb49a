"""The YAHPO Gym LCBench surrogate (34 OpenML tasks, funnel MLPs) as a simulator blackbox.

The ONNX model takes ``x_cat`` (int32: the task id, integer-encoded by ``encoding.json``) and ``x_cont`` (float32,
raw values in YAHPO's ``cont_names`` order: epoch, batch_size, learning_rate, momentum, weight_decay, num_layers,
max_units, max_dropout -- the model applies its own log transforms) and returns, per row, YAHPO's ``y_names``:
time (cumulative seconds), val_accuracy (percent), val_cross_entropy, val_balanced_accuracy, test_cross_entropy,
test_balanced_accuracy.

YAHPO's fidelity ``epoch`` runs 1..52 over LCBench's 52 logged entries, and the FIRST entry is the evaluation of
the untrained network (LCBench logs once at initialisation, then after each training epoch): at YAHPO epoch 1 the
validation balanced accuracy sits at chance level (0.50 on binary tasks, 0.14 on 7-class covertype), and its rank
is uncorrelated with the final one. Learning-curve HPO code on LCBench drops that entry too (e.g. ifBO's LCBench
wrapper: ``max_budget = 51``, the curve is ``val_curve[1:]``, ``val_curve[0]`` its "init value"). So ``curves()``
returns the 51 TRAINED epochs: our epoch ``e`` is YAHPO epoch ``e + 1``, and its cumulative time includes the set-up
and initial evaluation (YAHPO epoch 1's time), which a real trial pays before its first result. ``evaluate()`` still
returns all 52 raw YAHPO fidelities.

    >>> bb = LCBench('3945')                                    # doctest: +SKIP
    >>> curve = bb.curves([bb.default_config()])[0]             # doctest: +SKIP
    >>> curve.rewards.shape, curve.elapsed[-1] > curve.elapsed[0]  # doctest: +SKIP
    ((51,), True)
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from jaxgluon.tune.sim.blackbox import Curve, monotone_elapsed

CONT_NAMES = ("epoch", "batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units",
              "max_dropout")
Y_NAMES = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy", "test_cross_entropy",
           "test_balanced_accuracy")
_HP = CONT_NAMES[1:]


def default_path() -> pathlib.Path:
    """``$JAXGLUON_LCBENCH``, else ``../shared/bench/yahpo_lcbench`` next to the repository."""
    env = os.environ.get("JAXGLUON_LCBENCH")
    if env:
        return pathlib.Path(env)
    shared = os.environ.get("JAXGLUON_SHARED")
    root = pathlib.Path(shared) if shared else pathlib.Path(__file__).resolve().parents[4] / "shared"
    return root / "bench" / "yahpo_lcbench"


class LCBench:
    """One LCBench task as a blackbox: reward = validation accuracy in percent, cost = the surrogate's time.

    Args:
        task_id: OpenML task id (str or int), one of ``LCBench.tasks()``.
        path: folder with model.onnx, config_space.json and encoding.json (default: ``default_path()``).
        metric: 'val_accuracy' (percent, maximise) or 'val_balanced_accuracy' (in [0, 1]).
    """

    max_epochs = 51            # trained epochs (YAHPO epochs 2..52)
    surrogate_epochs = 52      # YAHPO fidelities 1..52; fidelity 1 is the untrained network
    mode = "max"

    def __init__(self, task_id: str | int, path: str | os.PathLike | None = None,
                 metric: str = "val_accuracy") -> None:
        import onnxruntime as ort

        self.path = pathlib.Path(path) if path is not None else default_path()
        model = self.path / "model.onnx"
        if not model.is_file():
            raise FileNotFoundError(f"LCBench surrogate not found at {model}; pass path= or set JAXGLUON_LCBENCH "
                                    "to the yahpo_lcbench folder")
        if metric not in ("val_accuracy", "val_balanced_accuracy"):
            raise ValueError(f"metric must be 'val_accuracy' or 'val_balanced_accuracy', got {metric!r}")
        self.metric = metric
        self._config_space = json.loads((self.path / "config_space.json").read_text())
        encoding = json.loads((self.path / "encoding.json").read_text())["OpenML_task_id"]
        self.task_id = str(task_id)
        if self.task_id not in self.tasks(self.path):
            raise ValueError(f"unknown LCBench task {self.task_id!r}; valid tasks: {', '.join(self.tasks(self.path))}")
        self._task_code = int(encoding[self.task_id])
        self._bounds = {hp["name"]: hp for hp in self._config_space["hyperparameters"]}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])

    @staticmethod
    def tasks(path: str | os.PathLike | None = None) -> list[str]:
        """The 34 OpenML task ids the surrogate covers."""
        root = pathlib.Path(path) if path is not None else default_path()
        space = json.loads((root / "config_space.json").read_text())
        return list(next(hp for hp in space["hyperparameters"] if hp["name"] == "OpenML_task_id")["choices"])

    @property
    def search_space(self) -> dict[str, Any]:
        """The LCBench config space (ranges and log scales from config_space.json) in jaxgluon.space terms."""
        from jaxgluon.space import Int, Real

        space = {}
        for name in _HP:
            hp = self._bounds[name]
            cls = Int if hp["type"] == "uniform_int" else Real
            space[name] = cls(hp["lower"], hp["upper"], log=bool(hp["log"]))
        return space

    def default_config(self) -> dict[str, Any]:
        return {name: self._bounds[name]["default"] for name in _HP}

    def _encode(self, configs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        for config in configs:
            missing = [n for n in _HP if n not in config]
            if missing:
                raise ValueError(f"LCBench config lacks {missing}; it needs {list(_HP)}")
            values = []
            for name in _HP:
                hp = self._bounds[name]
                value = float(config[name])
                if not hp["lower"] - 1e-9 <= value <= hp["upper"] + 1e-9:
                    raise ValueError(f"LCBench {name}={value} is outside [{hp['lower']}, {hp['upper']}]")
                values.append(round(value) if hp["type"] == "uniform_int" else value)
            rows.append(values)
        hps = np.asarray(rows, dtype=np.float32)                       # [n, 7]
        n, e = len(configs), self.surrogate_epochs
        epochs = np.tile(np.arange(1, e + 1, dtype=np.float32), n)[:, None]
        x_cont = np.concatenate([epochs, np.repeat(hps, e, axis=0)], axis=1)  # [n*e, 8] in CONT_NAMES order
        x_cat = np.full((n * e, 1), self._task_code, dtype=np.int32)
        return x_cat, x_cont

    def evaluate(self, configs: Sequence[dict]) -> dict[str, np.ndarray]:
        """All surrogate outputs, each ``[len(configs), 52]`` (YAHPO epochs 1..52; epoch 1 = untrained network),
        keyed by YAHPO's y names."""
        if not configs:
            return {name: np.zeros((0, self.surrogate_epochs)) for name in Y_NAMES}
        x_cat, x_cont = self._encode(configs)
        out = self._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0].astype(np.float64)
        out = out.reshape(len(configs), self.surrogate_epochs, len(Y_NAMES))
        return {name: out[..., i] for i, name in enumerate(Y_NAMES)}

    def curves(self, configs: Sequence[dict]) -> list[Curve]:
        """Learning curves over the 51 trained epochs (the untrained YAHPO epoch 1 is no result; its time is the
        set-up cost folded into the first epoch)."""
        ys = self.evaluate(configs)
        upper = 100.0 if self.metric == "val_accuracy" else 1.0
        rewards = np.clip(ys[self.metric], 0.0, upper)[:, 1:]
        elapsed = monotone_elapsed(ys["time"])[:, 1:]
        return [Curve(rewards=r, elapsed=t) for r, t in zip(rewards, elapsed)]
