"""A trained network ready to predict: restored from a trial's best checkpoint or a saved model directory.

    from jaxgluon.train import load_trained
    model = load_trained(trial_checkpoint_dir)          # the best epoch by validation reward
    probs = model.predict_proba([img1, img2])           # uint8 HxWx3 arrays, paths or PIL images -> [2, C]
    model.evaluate(test_source)                         # top-1 in [0, 1]
    model.save("out/model")                             # standalone: meta.json + variables/
    same = load_trained("out/model")
"""
from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.state import TrainState, create_train_state
from jaxgluon.train.steps import compile_steps, make_mesh
from jaxgluon.train.trial import CHECKPOINT_SUBDIR, META_FORMAT, evaluate_loader

META_FILE = "meta.json"
VARIABLES_DIR = "variables"


def _logits(state: TrainState, images: jax.Array) -> jax.Array:
    return state.model(train=False)(images).astype(jnp.float32)


class TrainedModel:
    """A network with its trained variables and the facts needed to feed it (``meta``).

    ``meta`` holds at least ``net``, ``num_classes``, ``class_names``, ``image_size``, ``mean``, ``std``.
    """

    def __init__(self, state: TrainState, meta: dict[str, Any], *, batch_size: int = 64):
        self.meta = dict(meta)
        self._steps = compile_steps(make_mesh())
        self._state = self._steps.replicate(state)
        self.batch_size = -(-batch_size // self._steps.num_devices) * self._steps.num_devices
        self._forward = jax.jit(_logits)

    net = property(lambda self: self.meta["net"])
    class_names = property(lambda self: list(self.meta["class_names"]))
    num_classes = property(lambda self: int(self.meta["num_classes"]))
    image_size = property(lambda self: int(self.meta["image_size"]))
    mean = property(lambda self: tuple(self.meta["mean"]))
    std = property(lambda self: tuple(self.meta["std"]))

    @property
    def state(self) -> TrainState:
        return self._state

    def predict_proba(self, images: Any) -> np.ndarray:
        """Class probabilities [N, num_classes] for one image or a sequence/array of images.

        Images go through ``data.preprocess_eval`` (uint8 HxWx3 arrays, greyscale, paths, PIL images).
        """
        x = jdata.preprocess_eval(images, self.image_size, self.mean, self.std)
        out = []
        for i in range(0, len(x), self.batch_size):   # a fixed batch shape: one compilation
            chunk = x[i:i + self.batch_size]
            padded = np.zeros((self.batch_size,) + x.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            batch = self._steps.shard({"image": padded, "label": np.zeros(self.batch_size, np.int32)})
            out.append(np.asarray(jax.nn.softmax(self._forward(self._state, batch["image"])))[:len(chunk)])
        return np.concatenate(out)

    def predict(self, images: Any) -> np.ndarray:
        """Predicted class indices (see :meth:`predict_proba`); names via ``class_names``."""
        return np.argmax(self.predict_proba(images), axis=-1)

    def evaluate(self, source: Any, *, worker_count: int = 0) -> float:
        """Top-1 accuracy on a data source (its ``class_names`` must match the model's)."""
        if list(source.class_names) != self.class_names:
            raise ValueError(f"the source's classes {list(source.class_names)} differ from the model's "
                             f"{self.class_names}")
        loader = jdata.make_loader(source, batch_size=self.batch_size, image_size=self.image_size, mean=self.mean,
                                   std=self.std, train=False, worker_count=worker_count)
        sums = evaluate_loader(self._steps, self._state, loader)
        return sums["correct"] / max(sums["count"], 1.0)

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Writes a standalone model directory (``meta.json`` + Orbax ``variables/``) for :func:`load_trained`."""
        directory = pathlib.Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / VARIABLES_DIR).exists():
            raise ValueError(f"{directory} already holds a saved model; choose an empty directory")
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(directory / VARIABLES_DIR, self._state.variables())
            checkpointer.wait_until_finished()
        (directory / META_FILE).write_text(json.dumps(self.meta, indent=2, sort_keys=True))
        return directory

    def __repr__(self) -> str:
        return f"TrainedModel(net={self.net!r}, classes={self.num_classes}, image_size={self.image_size})"


def _template(meta: dict[str, Any]) -> TrainState:
    if meta.get("format") != META_FORMAT:
        raise ValueError(f"unknown trained-model format {meta.get('format')!r} (expected {META_FORMAT!r})")
    model = models.get_model(meta["net"], int(meta["num_classes"]), pretrained=False)
    return create_train_state(model, optax.identity())


def load_trained(path: str | pathlib.Path, *, epoch: int | None = None, batch_size: int = 64) -> TrainedModel:
    """A :class:`TrainedModel` from a saved model directory or a trial's checkpoint directory.

    Args:
      path: a directory written by :meth:`TrainedModel.save`, a trial's ``checkpoint_dir`` (holding
        ``checkpoints/``), or that ``checkpoints/`` folder itself.
      epoch: which checkpointed epoch to load (default: the best by validation reward); trial directories only.
    """
    path = pathlib.Path(path).expanduser().absolute()
    if (path / META_FILE).is_file():
        if epoch is not None:
            raise ValueError(f"{path} is a saved model (one set of weights); epoch= applies to trial checkpoints")
        meta = json.loads((path / META_FILE).read_text())
        template = _template(meta)
        with ocp.StandardCheckpointer() as checkpointer:
            variables = checkpointer.restore(path / VARIABLES_DIR, template.variables())
        return TrainedModel(template.replace_variables(variables), meta, batch_size=batch_size)
    ckpt_dir = path / CHECKPOINT_SUBDIR if (path / CHECKPOINT_SUBDIR).is_dir() else path
    if not ckpt_dir.is_dir():
        raise ValueError(f"{path} is neither a saved model (no {META_FILE}) nor a trial checkpoint directory")
    with TrialCheckpointer(ckpt_dir, read_only=True) as ckpt:
        chosen = ckpt.best_epoch() if epoch is None else int(epoch)
        if chosen is None:
            raise ValueError(f"no checkpoints in {ckpt_dir}; train the trial for at least one epoch first")
        if chosen not in ckpt.all_epochs():
            raise ValueError(f"epoch {chosen} is not checkpointed in {ckpt_dir}; available: {ckpt.all_epochs()}")
        meta = ckpt.restore_meta(chosen)
        template = _template(meta)
        variables = ckpt.restore_variables(chosen, template.variables())
        meta = {**meta, "epoch": chosen, "reward": ckpt.reward(chosen)}
    return TrainedModel(template.replace_variables(variables), meta, batch_size=batch_size)

