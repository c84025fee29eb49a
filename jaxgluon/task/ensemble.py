"""Ensemble selection (greedy with replacement, Caruana et al., ICML 2004, or a uniform average) and the ensemble
model it makes.

    counts = greedy_selection(val_probs, val_labels, metric='log_loss')    # val_probs [M, N, C] -> counts [M]
    weights, rule = select_weights(val_probs, val_labels, nets)           # the rule fit uses (below)
    model = EnsembleModel(members, counts)        # predict_proba = weighted mean of the members' probabilities
    model.save('out/model'); same = load_ensemble('out/model')

Which rule (:func:`select_weights`): candidates of two or more networks are averaged uniformly, leaving out only
those that learned less than half as much as the best (:func:`average_weights`); candidates of one network go
through greedy selection. Greedy selection fits the validation images, and on the small validation sets a fit
has (61-370 images on the shared folders) it overfits them. On six 600 s CPU fits with three EfficientNet-Lite
nets (``benchmarks/ensemble_selection.py``, 2026-12-05), greedy selection kept a single model on both hymenoptera
fits. The uniform average scored 0.8995 mean test top-1 there, against greedy's 0.8938 and the single model's
0.8776, although its validation log-loss was worse every time. On six more fits with seeds never used in choosing
the rule, it scored 0.8963 against 0.8881 and 0.8590. Over all twelve, it beat the single model 7 times and lost
once, by one test image; greedy beat it 5 times and never lost. Candidates of one network err alike, and among
them the weaker ones only dilute the best: over 10 earlier fits whose candidates were all one network
(efficientnet_lite0, or cifar_resnet20_v1 on cifar10_test_1k) the average lost to the single model 6 times, so
greedy selection stays the rule there.

Served or not (``jaxgluon.task.final_model.build_ensemble``): either rule's ensemble is served only when it scores
better on validation than its best member, by the fit's metric. For greedy selection that holds almost by
construction; the average had no such contest until test-time augmentation came, which helps one model more than an
average of ten (``benchmarks/history/2026-12-06-tta.md``). With it on both sides, over 600 s CPU fits of seeds 0-8,
the uncontested average lost to the single model on 7 of 9 hymenoptera fits (1-3 of 153 test images each), won on
1 and tied on 1; on imagenette_small it tied 7 times and lost twice. The contest served the single model on every
hymenoptera fit it was run on (seeds 0-4 and 6-8): 6 better than the average, 1 worse (seed 8, by 3 images), 1
equal. On imagenette_small it served the single model on 7 of 8 fits (2 better, the rest equal) and on flowers5 the
average, 6-7 test points above the single model, every time (``benchmarks/history/2026-12-06-contest.md``). A
fairer-looking rival, the best member picked out of fold (picking the best of ten on 61 images earns it nothing),
let the average through on two fits where it lost.

Selection starts from an empty ensemble and, each round, adds (again, if it is already in) the member whose addition
gives the best validation score of the averaged probabilities; the result is the ensemble of the best round, so it
is never worse on that validation set than the best single member (round 1 picks it). Weights are the selection
counts. A saved ensemble is a folder with ``ensemble.json`` (weights, member folders; :data:`ENSEMBLE_SCHEMA`),
one saved ``TrainedModel`` per member under ``members/<i>/`` (each with its own manifest) and a ``manifest.json``
over them (``jaxgluon.train.integrity``).
"""
from __future__ import annotations

import pathlib
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxgluon.train import TrainedModel, load_trained
from jaxgluon.train.integrity import (MANIFEST_FIELD, MANIFEST_FILE, SavedModelError, check_saved, read_json_file,
                                      validate_json, verify_manifest, write_json, write_manifest)
from jaxgluon.train.trained import predict_proba_together, predict_source_together

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "jaxgluon.ensemble/1"
MEMBERS_DIR = "members"
#: What an ``EnsembleModel`` serves as (``meta['final_model']``): an ensemble of trials, or a refit averaged with
#: the trial model it refits (``jaxgluon.task.final_model``).
ENSEMBLE_KINDS = ("ensemble", "refit")
#: Selection rounds (Caruana et al. use 100s over libraries of 1000s of models; with a handful of trials the
#: counts settle within a few dozen rounds).
DEFAULT_ROUNDS = 25
SELECTION_METRICS = ("log_loss", "accuracy")
_EPS = 1e-12

ENSEMBLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "members", "weights"],
    "properties": {
        "format": {"const": ENSEMBLE_FORMAT},
        "members": {"type": "array", "minItems": 1, "maxItems": 1000,
                    "items": {"type": "string", "pattern": f"^{MEMBERS_DIR}/[0-9]+$"}},
        "weights": {"type": "array", "minItems": 1, "maxItems": 1000,
                    "items": {"type": "number", "exclusiveMinimum": 0}},
        "trial_ids": {"type": "array", "items": {"type": ["integer", "null"]}},
        "metric": {"enum": list(SELECTION_METRICS)},
        "final_model": {"enum": list(ENSEMBLE_KINDS)},
        MANIFEST_FIELD: {"const": MANIFEST_FILE},
    },
}


def scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(top-1, log-loss)`` of probabilities ``[N, C]`` against integer ``labels [N]``."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    if len(labels) == 0:
        return float("nan"), float("nan")
    top1 = float(np.mean(np.argmax(probs, -1) == labels))
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0))))
    return top1, loss


def score_key(score: tuple[float, float], metric: str) -> tuple[float, float]:
    """The sort key (lower is better) of a ``(top-1, log-loss)`` score under ``metric``: log-loss (top-1 breaks
    ties), or error rate (log-loss breaks its many ties)."""
    top1, loss = score
    return (loss, -top1) if metric == "log_loss" else (-top1, loss)


def _rank_key(probs: np.ndarray, labels: np.ndarray, metric: str) -> tuple[float, float]:
    return score_key(scores(probs, labels), metric)


def greedy_selection(probs: np.ndarray, labels: np.ndarray, metric: str = "log_loss",
                     rounds: int = DEFAULT_ROUNDS) -> np.ndarray:
    """Caruana et al.'s forward selection with replacement: the selection counts ``[M]`` (ints summing to the
    best round's size) over ``M`` candidates' validation probabilities ``probs [M, N, C]``.

    Each round adds the candidate that makes the averaged probabilities score best by ``metric`` ('log_loss', or
    'accuracy' with log-loss breaking ties); the earliest candidate wins exact ties. Returns the counts of the best
    round over all ``rounds`` (the first on ties), so the ensemble's validation score is at least the best
    candidate's.

    >>> a = [[.9, .1], [.45, .55]]     # right on image 0 only (both images are class 0)
    >>> b = [[.45, .55], [.9, .1]]     # right on image 1 only; their mean is right on both
    >>> greedy_selection(np.array([a, b]), np.array([0, 0]), 'accuracy', rounds=3).tolist()
    [1, 1]
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if probs.ndim != 3 or probs.shape[0] == 0 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be [M >= 1, N, C] with N = len(labels) = {len(labels)}; got {probs.shape}")
    if metric not in SELECTION_METRICS:
        raise ValueError(f"metric must be one of {SELECTION_METRICS}, got {metric!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    counts = np.zeros(len(probs), np.int64)
    total = np.zeros(probs.shape[1:])
    best_key, best_counts = None, counts
    for size in range(1, rounds + 1):
        keys = [_rank_key((total + p) / size, labels, metric) for p in probs]
        pick = min(range(len(probs)), key=lambda i: keys[i])   # the earliest on ties
        counts = counts.copy()
        counts[pick] += 1
        total = total + probs[pick]
        if best_key is None or keys[pick] < best_key:
            best_key, best_counts = keys[pick], counts
    return best_counts


#: Rules :func:`select_weights` applies ('auto': 'average' for candidates of two or more nets, else 'greedy').
SELECTION_RULES = ("auto", "average", "greedy")


def average_weights(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Uniform weights ``[M]`` (0 or 1) over candidates ``probs [M, N, C]``: 1 for each whose validation top-1 is at
    least halfway from chance (1 / C) to the best candidate's, 0 for the others (a trial whose learning rate
    diverged, say, would only add noise to the mean).

    >>> p = np.array([[[.8, .2], [.3, .7]], [[.6, .4], [.4, .6]], [[.4, .6], [.6, .4]]])  # right on 2, 2, 0 of 2
    >>> average_weights(p, np.array([0, 1])).tolist()
    [1.0, 1.0, 0.0]
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    top1 = np.array([scores(p, labels)[0] for p in probs])
    chance = 1.0 / probs.shape[-1]
    return (top1 >= (chance + top1.max()) / 2 - 1e-12).astype(np.float64)


def select_weights(probs: np.ndarray, labels: np.ndarray, nets: Sequence[str], metric: str = "log_loss",
                   rule: str = "auto") -> tuple[np.ndarray, str]:
    """The ensemble's weights ``[M]`` over candidates ``probs [M, N, C]`` of networks ``nets [M]``, and the rule
    that made them: 'average' (:func:`average_weights`) when ``rule`` is 'average', or 'auto' and the candidates
    come from two or more networks; else 'greedy' (:func:`greedy_selection` by ``metric``). The module docstring
    says why."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"rule must be one of {SELECTION_RULES}, got {rule!r}")
    if len(nets) != len(probs):
        raise ValueError(f"one net name per candidate: {len(nets)} names for {len(probs)} candidates")
    if rule == "average" or (rule == "auto" and len(set(nets)) >= 2):
        return average_weights(probs, labels), "average"
    return greedy_selection(probs, labels, metric).astype(np.float64), "greedy"


class Contest(NamedTuple):
    """An ensemble against its best candidate on validation (:func:`contest`)."""

    score: tuple[float, float]        # the ensemble's (top-1, log-loss)
    best: int                         # index of the best candidate by the metric
    best_score: tuple[float, float]   # its (top-1, log-loss)
    served: bool                      # two or more candidates kept, and strictly better than the best


def contest(weights: np.ndarray, probs: np.ndarray, labels: np.ndarray, metric: str) -> Contest:
    """The rule that decides whether ``fit`` serves the ensemble of ``weights [M]`` over candidates ``probs [M, N,
    C]``: it keeps two or more of them and scores strictly better than the best one by ``metric``
    (:func:`score_key`). The module docstring says why the average has this contest too.

    >>> a, b = [[.9, .1], [.3, .7]], [[.3, .7], [.9, .1]]     # each right on one image (both are class 0)
    >>> contest(np.array([1.0, 1.0]), np.array([a, b]), np.array([0, 0]), 'log_loss').served
    True
    >>> contest(np.array([1.0, 0.0]), np.array([a, b]), np.array([0, 0]), 'log_loss').served   # one model
    False
    """
    score = scores(np.tensordot(weights / weights.sum(), probs, axes=1), labels)
    singles = [scores(p, labels) for p in probs]
    best = min(range(len(singles)), key=lambda i: score_key(singles[i], metric))
    served = np.count_nonzero(weights) >= 2 and score_key(score, metric) < score_key(singles[best], metric)
    return Contest(score, best, singles[best], bool(served))


class EnsembleModel:
    """Members (``TrainedModel``s of one class list) whose probabilities are averaged with ``weights``.

    Serves the interface ``Results`` uses: ``predict_proba``, ``predict``, ``evaluate``, ``save``, ``class_names``.
    ``meta`` holds ``final_model`` ('ensemble', or 'refit' for a refit averaged with its trial's model:
    :data:`ENSEMBLE_KINDS`), the weights and the members' trial ids (None for a refit).
    """

    def __init__(self, members: Sequence[TrainedModel], weights: Sequence[float], *,
                 trial_ids: Sequence[int | None] | None = None, metric: str = "log_loss",
                 final_model: str = "ensemble"):
        if final_model not in ENSEMBLE_KINDS:
            raise ValueError(f"final_model must be one of {', '.join(map(repr, ENSEMBLE_KINDS))}, got {final_model!r}")
        if not members or len(members) != len(weights):
            raise ValueError(f"an ensemble needs members and one weight each; got {len(members)} and {len(weights)}")
        weights = np.asarray(weights, np.float64)
        if not np.all(weights > 0):
            raise ValueError(f"ensemble weights must be positive, got {weights.tolist()}")
        names = members[0].class_names
        for m in members[1:]:
            if m.class_names != names:
                raise ValueError(f"ensemble members disagree on the classes: {names} vs {m.class_names}")
        self.members = list(members)
        self.weights = weights
        self.trial_ids = list(trial_ids) if trial_ids is not None else [m.meta.get("trial_id") for m in members]
        self.metric = metric
        self.meta = {"final_model": final_model, "class_names": list(names), "num_classes": len(names),
                     "weights": weights.tolist(), "trial_ids": self.trial_ids, "metric": metric,
                     "nets": [m.net for m in members]}

    class_names = property(lambda self: list(self.meta["class_names"]))
    num_classes = property(lambda self: int(self.meta["num_classes"]))
    #: Whether every member trained on left-right flipped images (``TrainedModel.flip_trained``).
    flip_trained = property(lambda self: all(m.flip_trained for m in self.members))

    @property
    def tta(self) -> bool:
        """Test-time augmentation of every member (``TrainedModel.tta``); setting it sets theirs."""
        return all(m.tta for m in self.members)

    @tta.setter
    def tta(self, on: bool) -> None:
        for m in self.members:
            m.tta = on

    def _mix(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        return np.tensordot(self.weights / self.weights.sum(), np.stack(parts), axes=1)

    def predict_proba(self, images: Any) -> np.ndarray:
        """The weighted mean of the members' softmax probabilities, ``[N, C]``; each image is decoded once per
        distinct member input (image size, normalisation), not once per member."""
        return self._mix(predict_proba_together(self.members, images))

    def predict(self, images: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(images), axis=-1)

    def predict_proba_source(self, source: Any, **kw: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """``(weighted mean probabilities, labels)`` over a data source; members fed alike share each batch
        (``jaxgluon.train.trained.predict_source_together``). ``kw``: ``deadline``, ``worker_count``."""
        parts = predict_source_together(self.members, source, **kw)
        if parts is None:
            return None
        return self._mix([p for p, _ in parts]), parts[0][1]

    def evaluate(self, source: Any, *, worker_count: int = 0) -> float:
        """Top-1 accuracy of the weighted ensemble on a data source."""
        probs, labels = self.predict_proba_source(source, worker_count=worker_count)
        return scores(probs, labels)[0]

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """``ensemble.json``, each member's saved model in ``members/<i>/``, then ``manifest.json``."""
        directory = pathlib.Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ValueError(f"{directory} is not empty; save into a new or empty folder")
        names = [f"{MEMBERS_DIR}/{i}" for i in range(len(self.members))]
        for name, member in zip(names, self.members):
            member.save(directory / name)
        write_json(directory / ENSEMBLE_FILE, {"format": ENSEMBLE_FORMAT, "members": names,
                                               "weights": self.weights.tolist(), "trial_ids": self.trial_ids,
                                               "metric": self.metric, "final_model": self.meta["final_model"],
                                               MANIFEST_FIELD: MANIFEST_FILE}, indent=1)
        write_manifest(directory)
        return directory

    def __repr__(self) -> str:
        parts = ", ".join(f"{m.net}x{w:g}" for m, w in zip(self.members, self.weights))
        return f"EnsembleModel({parts}; classes={self.num_classes})"


def is_saved_ensemble(path: str | pathlib.Path) -> bool:
    return (pathlib.Path(path) / ENSEMBLE_FILE).is_file()


def load_ensemble(path: str | pathlib.Path) -> EnsembleModel:
    """Reads what :meth:`EnsembleModel.save` wrote, after its manifest (each member's is checked when the member
    loads) and ``ensemble.json`` against :data:`ENSEMBLE_SCHEMA`."""
    path = pathlib.Path(path).expanduser().absolute()
    verified = verify_manifest(path)
    spec = read_json_file(path / ENSEMBLE_FILE, "the saved ensemble is corrupt; save it again")
    if not verified:
        check_saved(path, spec, ENSEMBLE_FILE)
    validate_json(spec, ENSEMBLE_SCHEMA, str(path / ENSEMBLE_FILE))
    if len(spec["members"]) != len(spec["weights"]):
        raise SavedModelError(f"{path / ENSEMBLE_FILE} is invalid: {len(spec['members'])} members but "
                              f"{len(spec['weights'])} weights")
    members = [load_trained(path / name) for name in spec["members"]]
    return EnsembleModel(members, spec["weights"], trial_ids=spec.get("trial_ids"),
                         metric=spec.get("metric", "log_loss"), final_model=spec.get("final_model", "ensemble"))
