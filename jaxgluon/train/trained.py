"""A trained network ready to predict: restored from a trial's best checkpoint or a saved model directory.

    from jaxgluon.train import load_trained
    model = load_trained(trial_checkpoint_dir)          # the best epoch by validation reward
    probs = model.predict_proba([img1, img2])           # uint8 HxWx3 arrays, paths or PIL images -> [2, C]
    model.evaluate(test_source)                         # top-1 in [0, 1]
    model.save("out/model")                             # standalone: meta.json + variables/ + manifest.json
    same = load_trained("out/model")                    # verifies every file's sha256 and meta.json's schema first
    model.tta = True                                    # predictions average the image and its mirror image

Test-time augmentation (``tta``, saved in ``meta``): with it on, every prediction (``predict_proba``,
``predict_proba_source``, ``evaluate``) is the mean of the class probabilities of each image and of its left-right
mirror image, at twice the cost. It suits a network trained with flipped images (``meta['augment']`` contains
'flip': :attr:`TrainedModel.flip_trained`); ``task.fit(tta='auto')`` turns it on for those (why:
``jaxgluon.task.final_model``).

A saved model is verified on load (``jaxgluon.train.integrity``): a file that changed after the save, a missing
file, or a ``meta.json`` outside :data:`META_SCHEMA` (a missing key, an ``image_size`` too large to allocate) is a
:class:`~jaxgluon.train.integrity.SavedModelError` naming the file and the problem, raised before any weights are
read. A model saved before manifests existed loads with a warning.
"""
from __future__ import annotations

import pathlib
import warnings
from typing import Any, Sequence

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.models.registry import abstract_model
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.integrity import (MANIFEST_FIELD, MANIFEST_FILE, SavedModelError, check_saved, read_json_file,
                                      validate_json, verify_manifest, write_json, write_manifest)
from jaxgluon.train.state import TrainState, create_train_state
from jaxgluon.train.steps import PROGRAMS, make_mesh
from jaxgluon.train.trial import CHECKPOINT_SUBDIR, META_FORMAT
from jaxgluon.train.val_predictions import ValidationPass

META_FILE = "meta.json"
VARIABLES_DIR = "variables"
#: Largest accepted sizes: a model description beyond them is refused as damage before anything is allocated
#: (activation memory grows with the square of ``image_size``; the registered nets take 32-224 px).
MAX_IMAGE_SIZE, MAX_CLASSES = 2048, 100_000

_NUMBER3 = {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}}
#: What a model's ``meta`` must hold (saved ``meta.json`` and trial checkpoints alike); other keys are kept as is.
META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "net", "num_classes", "class_names", "image_size", "mean", "std"],
    "properties": {
        "format": {"const": META_FORMAT},
        "net": {"type": "string", "minLength": 1, "maxLength": 200},
        "num_classes": {"type": "integer", "minimum": 1, "maximum": MAX_CLASSES},
        "class_names": {"type": "array", "maxItems": MAX_CLASSES, "uniqueItems": True,
                        "items": {"type": "string", "maxLength": 1000}},
        "image_size": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_SIZE},
        "mean": {**_NUMBER3, "items": {"type": "number", "minimum": 0, "maximum": 1}},
        "std": {**_NUMBER3, "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}},
        "compute_dtype": {"enum": ["float32", "bfloat16", "float16"]},
        "epoch": {"type": ["integer", "null"], "minimum": 0},
        "reward": {"type": ["number", "null"]},
        "config": {"type": "object"},
        "augment": {"type": "string", "maxLength": 100},
        "tta": {"type": "boolean"},
        MANIFEST_FIELD: {"const": MANIFEST_FILE},
    },
}


def validate_meta(meta: Any, where: str) -> dict[str, Any]:
    """``meta`` checked against :data:`META_SCHEMA` (and ``class_names`` against ``num_classes``)."""
    validate_json(meta, META_SCHEMA, where)
    if len(meta["class_names"]) != meta["num_classes"]:
        raise SavedModelError(f"{where} is invalid: num_classes is {meta['num_classes']} but class_names has "
                              f"{len(meta['class_names'])} names")
    try:
        models.model_info(meta["net"])
    except (KeyError, ValueError) as err:
        raise SavedModelError(f"{where} is invalid: net: {err}") from err
    return meta


def _mirrored(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with each NHWC image flipped left to right (host or device arrays alike)."""
    return {**batch, "image": batch["image"][:, :, ::-1]}


class _Predictions:
    """A model's probabilities over batches through the compiled eval step (the program the trials ran), averaged
    with the mirror images' when the model's ``tta`` is on."""

    def __init__(self, model: "TrainedModel"):
        self.model = model
        self.plain = ValidationPass()
        self.mirror = ValidationPass() if model.tta else None

    def add(self, batch: dict[str, Any]) -> None:
        self.plain.add(self.model._steps, self.model._state, batch)
        if self.mirror is not None:
            self.mirror.add(self.model._steps, self.model._state, _mirrored(batch))

    def wait(self) -> None:
        """Blocks until every batch added so far is computed."""
        if self.plain.outputs:
            jax.block_until_ready((self.mirror or self.plain).outputs[-1])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities [N, C] float64, labels [N] int64)`` of the unmasked rows, in order."""
        if not self.plain.outputs:
            return np.zeros((0, self.model.num_classes)), np.zeros(0, np.int64)
        out = self.plain.predictions(cap=False)
        probs = out["probs"].astype(np.float64)
        if self.mirror is not None:
            probs = (probs + self.mirror.predictions(cap=False)["probs"].astype(np.float64)) / 2
        return probs, out["labels"].astype(np.int64)


class TrainedModel:
    """A network with its trained variables and the facts needed to feed it (``meta``).

    ``meta`` holds at least ``net``, ``num_classes``, ``class_names``, ``image_size``, ``mean``, ``std``.
    """

    def __init__(self, state: TrainState, meta: dict[str, Any], *, batch_size: int = 64):
        self.meta = dict(meta)
        if int(self.meta["num_classes"]) < jdata.MIN_CLASSES:
            warnings.warn(f"this {self.meta['net']} model has {self.meta['num_classes']} class(es) "
                          f"{self.meta['class_names']}: every prediction is that class at probability 1.0 (it was "
                          "trained before jaxgluon refused training data with fewer than 2 classes)", RuntimeWarning,
                          stacklevel=2)
        self._steps = PROGRAMS.steps(make_mesh())   # shares the programs the trials of this process compiled
        self._state = self._steps.replicate(state)
        self.batch_size = -(-batch_size // self._steps.num_devices) * self._steps.num_devices

    net = property(lambda self: self.meta["net"])
    class_names = property(lambda self: list(self.meta["class_names"]))
    num_classes = property(lambda self: int(self.meta["num_classes"]))
    image_size = property(lambda self: int(self.meta["image_size"]))
    mean = property(lambda self: tuple(self.meta["mean"]))
    std = property(lambda self: tuple(self.meta["std"]))
    #: Whether the network trained on left-right flipped images (its train augmentation, when recorded).
    flip_trained = property(lambda self: "flip" in str(self.meta.get("augment", "")).split("+"))

    @property
    def tta(self) -> bool:
        """Test-time augmentation: predictions average each image and its mirror image (module docstring)."""
        return bool(self.meta.get("tta", False))

    @tta.setter
    def tta(self, on: bool) -> None:
        if not isinstance(on, (bool, np.bool_)):
            raise ValueError(f"tta must be True or False, got {on!r}")
        self.meta["tta"] = bool(on)

    @property
    def state(self) -> TrainState:
        return self._state

    def predict_proba(self, images: Any) -> np.ndarray:
        """Class probabilities [N, num_classes] (float32) for one image or a sequence/array of images.

        Images go through ``data.preprocess_eval`` (uint8 HxWx3 arrays, greyscale, paths, PIL images), then the
        compiled eval step in batches of one fixed shape (padding rows masked out), as :meth:`evaluate` runs it.
        """
        return predict_proba_together([self], images)[0]

    def predict(self, images: Any) -> np.ndarray:
        """Predicted class indices (see :meth:`predict_proba`); names via ``class_names``."""
        return np.argmax(self.predict_proba(images), axis=-1)

    def evaluate(self, source: Any, *, worker_count: int = 0) -> float:
        """Top-1 accuracy on a data source (its ``class_names`` must match the model's)."""
        if self.tta:
            probs, labels = self.predict_proba_source(source, worker_count=worker_count)
            return float(np.mean(np.argmax(probs, -1) == labels)) if len(labels) else 0.0
        if list(source.class_names) != self.class_names:
            raise ValueError(f"the source's classes {list(source.class_names)} differ from the model's "
                             f"{self.class_names}")
        loader = jdata.make_eval_loader(source, batch_size=self.batch_size, image_size=self.image_size,
                                        mean=self.mean, std=self.std, worker_count=worker_count)
        sums = ValidationPass.over(self._steps, self._state, loader).sums()
        return sums["correct"] / max(sums["count"], 1.0)

    def predict_proba_source(self, source: Any, *, deadline: float | None = None, worker_count: int = 0
                             ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(probabilities [N, C], labels [N])`` over a data source, batch by batch through the eval loader and
        the compiled eval step (``eval_predict_step``, the program the trials and :meth:`evaluate` run); None when
        the wall-clock ``deadline`` (``time.time()``) passes first (checked before each batch, so it is overrun by
        at most one batch)."""
        parts = predict_source_together([self], source, deadline=deadline, worker_count=worker_count)
        return None if parts is None else parts[0]

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Writes a standalone model directory for :func:`load_trained`: ``meta.json``, Orbax ``variables/``, and
        last ``manifest.json`` (sha256 of every file; see ``jaxgluon.train.integrity``)."""
        directory = pathlib.Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        if any((directory / name).exists() for name in (VARIABLES_DIR, META_FILE, MANIFEST_FILE)):
            raise ValueError(f"{directory} already holds a saved model; choose an empty directory")
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(directory / VARIABLES_DIR, self._state.variables())
            checkpointer.wait_until_finished()
        write_json(directory / META_FILE, {**self.meta, MANIFEST_FIELD: MANIFEST_FILE}, indent=2, sort_keys=True)
        write_manifest(directory)
        return directory

    def __repr__(self) -> str:
        return f"TrainedModel(net={self.net!r}, classes={self.num_classes}, image_size={self.image_size})"


def _input_key(model: TrainedModel) -> tuple:
    """What decoding feeds a model: models with equal keys take the very same batches."""
    return model.image_size, model.mean, model.std, model.batch_size


def predict_proba_together(models: Sequence[TrainedModel], images: Any) -> list[np.ndarray]:
    """Each model's :meth:`TrainedModel.predict_proba` of ``images``, decoding them once per distinct input (image
    size, normalisation) rather than once per model."""
    decoded: dict[tuple, np.ndarray] = {}
    out = []
    for model in models:
        key = _input_key(model)[:3]
        if key not in decoded:
            decoded[key] = jdata.preprocess_eval(images, model.image_size, model.mean, model.std)
        x, preds = decoded[key], _Predictions(model)
        for i in range(0, len(x), model.batch_size):
            chunk = x[i:i + model.batch_size]
            padded = np.zeros((model.batch_size,) + x.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            preds.add({"image": padded, "label": np.zeros(model.batch_size, np.int32),
                       "mask": np.arange(model.batch_size) < len(chunk)})
        out.append(preds.result()[0].astype(np.float32))
    return out


def predict_source_together(models: Sequence[TrainedModel], source: Any, *, deadline: float | None = None,
                            worker_count: int = 0) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Each model's :meth:`TrainedModel.predict_proba_source` over ``source``, with one pass of the eval loader per
    distinct input (image size, normalisation, batch size): the models of one input share each batch. A source
    whose decoded images fit the loader's cache is decoded once per image size either way; a larger one, which the
    loader streams, would otherwise be decoded again for every member. None when the wall-clock ``deadline``
    passes first (checked before each batch)."""
    import time

    for model in models:
        if list(source.class_names) != model.class_names:
            raise ValueError(f"the source's classes {list(source.class_names)} differ from the model's "
                             f"{model.class_names}")
    groups: dict[tuple, list[int]] = {}
    for i, model in enumerate(models):
        groups.setdefault(_input_key(model), []).append(i)
    out: list[Any] = [None] * len(models)
    for (image_size, mean, std, batch_size), members in groups.items():
        preds = [_Predictions(models[i]) for i in members]
        loader = jdata.make_loader(source, batch_size=batch_size, image_size=image_size, mean=mean, std=std,
                                   train=False, worker_count=worker_count)
        for batch in loader:
            if deadline is not None:
                for p in preds:
                    p.wait()
                if time.time() >= deadline:
                    return None
            for p in preds:
                p.add(batch)
        for i, p in zip(members, preds):
            out[i] = p.result()
    return out


def _template(meta: dict[str, Any]) -> TrainState:
    """An abstract state (``jax.ShapeDtypeStruct`` leaves) to restore into: no random initialiser runs and no
    program compiles (building a random model first cost 5-9 s of small compilations after a fit's deadline)."""
    model = abstract_model(meta["net"], int(meta["num_classes"]))
    return create_train_state(model, optax.identity())


def load_trained(path: str | pathlib.Path, *, epoch: int | None = None, batch_size: int = 64) -> TrainedModel:
    """A :class:`TrainedModel` from a saved model directory or a trial's checkpoint directory.

    Args:
      path: a directory written by :meth:`TrainedModel.save`, a trial's ``checkpoint_dir`` (holding
        ``checkpoints/``), or that ``checkpoints/`` folder itself.
      epoch: which checkpointed epoch to load (default: the best by validation reward); trial directories only.
    """
    path = pathlib.Path(path).expanduser().absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"{path} {'is not a directory' if path.exists() else 'does not exist'}; give a "
                                "directory written by TrainedModel.save / Results.save, or a trial's checkpoint "
                                "directory")
    if any((path / name).exists() for name in (META_FILE, MANIFEST_FILE, VARIABLES_DIR)):
        if epoch is not None:
            raise ValueError(f"{path} is a saved model (one set of weights); epoch= applies to trial checkpoints")
        return TrainedModel(*_load_saved(path), batch_size=batch_size)
    ckpt_dir = path / CHECKPOINT_SUBDIR if (path / CHECKPOINT_SUBDIR).is_dir() else path
    if ckpt_dir == path and path.name != CHECKPOINT_SUBDIR and not any(p.name.isdigit() for p in path.iterdir()):
        raise ValueError(f"{path} is neither a saved model (no {META_FILE}, {VARIABLES_DIR}/ or {MANIFEST_FILE}) nor a "
                         f"trial checkpoint directory (no {CHECKPOINT_SUBDIR}/); give the directory that "
                         "TrainedModel.save or Results.save wrote (for Results, its model/ folder or use Results.load)")
    with TrialCheckpointer(ckpt_dir, read_only=True) as ckpt:
        chosen = ckpt.best_epoch() if epoch is None else int(epoch)
        if chosen is None:
            raise ValueError(f"no checkpoints in {ckpt_dir}; train the trial for at least one epoch first")
        if chosen not in ckpt.all_epochs():
            raise ValueError(f"epoch {chosen} is not checkpointed in {ckpt_dir}; available: {ckpt.all_epochs()}")
        meta = validate_meta(ckpt.restore_meta(chosen), f"the metadata of epoch {chosen} in {ckpt_dir}")
        template = _template(meta)
        variables = ckpt.restore_variables(chosen, template.variables())
        meta = {**meta, "epoch": chosen, "reward": ckpt.reward(chosen)}
    return TrainedModel(template.replace_variables(variables), meta, batch_size=batch_size)


def _load_saved(path: pathlib.Path) -> tuple[TrainState, dict[str, Any]]:
    """The state and meta of a saved model directory, its manifest and ``meta.json`` verified first."""
    verified = verify_manifest(path)
    meta_path = path / META_FILE
    if not meta_path.is_file() and (path / "results.json").is_file():
        raise SavedModelError(f"{path} holds saved Results, not a model: load it with Results.load / "
                              f"ImageClassification.load, or give load_trained its model/ folder")
    if not meta_path.is_file():
        raise SavedModelError(
            f"{path} is not a complete saved model: its {META_FILE} (the network's name, classes and input size) is "
            f"missing, so its weights cannot be used; restore the file or save the model again")
    meta = read_json_file(meta_path, "the saved model's description is corrupt; save the model again")
    if not verified:
        check_saved(path, meta, META_FILE)
    validate_meta(meta, str(meta_path))
    if not (path / VARIABLES_DIR).is_dir():
        raise SavedModelError(f"{path} is not a complete saved model: its {VARIABLES_DIR}/ (the weights) is missing")
    meta = {k: v for k, v in meta.items() if k != MANIFEST_FIELD}
    template = _template(meta)
    with ocp.StandardCheckpointer() as checkpointer:
        variables = checkpointer.restore(path / VARIABLES_DIR, template.variables())
    return template.replace_variables(variables), meta
