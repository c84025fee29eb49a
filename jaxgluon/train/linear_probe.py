"""Linear-probe head initialisation: fit the classifier on frozen pretrained features before fine-tuning.

A pretrained backbone with a freshly initialised classifier is fine-tuned worse than one whose classifier already
fits the task: the random head's large, wrong gradients distort the pretrained features in the first steps,
which a small dataset and a short schedule never repair ("LP-FT", Kumar et al., ICLR 2022). So a trial may first
fit ``fc`` as a multinomial logistic regression on the pooled features of the training images (eval mode, eval
transforms: no augmentation), then fine-tune everything from there. The cost is one forward pass over the training
set; the features are kept in a ``FeatureCache`` (the search's ``TrialCaches.features``), so the trials of one
search that share a network, image size and data compute them once.

    feats, labels = pooled_features(model, loader)              # [N, D] float32, [N]
    kernel, bias = fit_linear_head(feats, labels, num_classes)   # L2-regularised softmax regression (L-BFGS)
    set_head(model, kernel, bias)
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

#: Features kept in the in-process cache at most (bytes): small datasets only.
CACHE_MAX_BYTES = 256 * 2**20


class FeatureCache:
    """Pooled features by key (net, weights, dtype, image size, data), kept while under ``max_bytes`` in all.

    Owned by a ``jaxgluon.train.TrialCaches`` (one per fit/tune call, or the process-level ``PROCESS_CACHES``):
    the trials of a search that share a network, its weights, the image size and the data compute the features
    once.
    """

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._entries: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, key: Hashable, compute: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """``compute()`` once per ``key`` (kept if the cache stays under ``max_bytes``)."""
        if key in self._entries:
            return self._entries[key]
        value = compute()
        size = value[0].nbytes + sum(v[0].nbytes for v in self._entries.values())
        if size <= self.max_bytes:
            self._entries[key] = value
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class DeadlinePassed(Exception):
    """The experiment's time limit passed while the features were being extracted: after ``images_done``
    images in ``seconds``."""

    def __init__(self, images_done: int = 0, seconds: float = 0.0, first_batch: tuple[int, float] = (0, 0.0)):
        super().__init__(f"deadline passed after {images_done} images in {seconds:.1f} s")
        self.images_done, self.seconds = int(images_done), float(seconds)
        #: (images, seconds) of the first batch, which includes compiling the feature program
        self.first_batch = (int(first_batch[0]), float(first_batch[1]))


@nnx.jit
def _features(model: nnx.Module, images: jax.Array) -> jax.Array:
    return model.features(images).astype(jnp.float32)


def pooled_features(model: nnx.Module | Callable[[dict], Any], loader: Any,
                    deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The model's pooled features (``model.features``, eval mode) and labels of every real example in ``loader``
    (an eval loader: padded rows, ``mask == 0``, are dropped). ``model`` may instead be a function of a batch
    returning its features (e.g. a compiled ``features_step``). Raises :class:`DeadlinePassed` after wall-clock
    ``deadline`` (``time.time()`` seconds)."""
    if isinstance(model, nnx.Module):
        module = model
        module.eval()
        model = lambda batch: _features(module, jnp.asarray(batch["image"]))  # noqa: E731
    feats, labels = [], []
    start = time.perf_counter()
    first_batch = (0, 0.0)
    for batch in loader:
        if deadline is not None and time.time() >= deadline:
            raise DeadlinePassed(sum(len(x) for x in labels), time.perf_counter() - start, first_batch)
        keep = np.asarray(batch["mask"]).astype(bool) if "mask" in batch else slice(None)
        feats.append(np.asarray(model(batch))[:len(batch["label"])][keep])
        labels.append(np.asarray(batch["label"])[keep])
        if len(labels) == 1:
            first_batch = (len(labels[0]), time.perf_counter() - start)
    return np.concatenate(feats), np.concatenate(labels).astype(np.int32)


def cached_features(key: Hashable, compute: Callable[[], tuple[np.ndarray, np.ndarray]],
                    cache: FeatureCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``compute()`` once per ``key`` in ``cache`` (default: the process-level ``caches.PROCESS_CACHES.features``)."""
    if cache is None:
        from jaxgluon.train.caches import PROCESS_CACHES   # caches imports this module
        cache = PROCESS_CACHES.features
    return cache.get(key, compute)


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter"))
def _fit(feats: jax.Array, labels: jax.Array, num_classes: int, l2: float, max_iter: int
         ) -> tuple[jax.Array, jax.Array]:
    mean, scale = feats.mean(0), feats.std(0) + 1e-6
    x = (feats - mean) / scale  # standardised: one L2 strength suits every backbone's feature scale
    onehot = jax.nn.one_hot(labels, num_classes)

    def loss(params):
        logits = x @ params["w"] + params["b"]
        return optax.softmax_cross_entropy(logits, onehot).mean() + 0.5 * l2 * jnp.sum(params["w"] ** 2)

    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(params, updates), state

    def going(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        return (count == 0) | ((count < max_iter) & (optax.tree_utils.tree_norm(grad) >= 1e-5))

    params, _ = jax.lax.while_loop(going, step, (params, opt.init(params)))
    # back to the raw features: w'(x - m)/s + b = (w/s)'x + (b - (m/s)'w)
    w = params["w"] / scale[:, None]
    return w, params["b"] - mean @ w


def fit_linear_head(feats: np.ndarray, labels: np.ndarray, num_classes: int, l2: float | None = None,
                    max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [D, num_classes], bias [num_classes]) of an L2-regularised softmax regression on ``feats``.

    ``l2`` (on standardised features, mean loss) defaults to ``1 / N``: scikit-learn's ``LogisticRegression(C=1)``
    objective.

    >>> x = np.array([[0., 1.], [1., 0.], [0., 2.], [2., 0.]]); y = np.array([0, 1, 0, 1])
    >>> w, b = fit_linear_head(x, y, 2)
    >>> bool((np.argmax(x @ w + b, 1) == y).all())
    True
    """
    feats = np.asarray(feats, np.float32)
    labels = np.asarray(labels, np.int32)
    if feats.ndim != 2 or len(feats) != len(labels) or len(labels) == 0:
        raise ValueError(f"need features [N, D] and N labels, got {feats.shape} and {labels.shape}")
    l2 = 1.0 / len(labels) if l2 is None else float(l2)
    w, b = _fit(feats, labels, num_classes, l2, max_iter)   # numpy in: jnp.asarray would compile a program
    return np.asarray(w), np.asarray(b)


def set_head(model: nnx.Module, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Writes ``kernel``/``bias`` into ``model.fc`` (an ``nnx.Linear``), keeping its parameter dtype."""
    fc = model.fc
    shape = tuple(fc.kernel.get_value().shape)
    if shape != tuple(kernel.shape):
        raise ValueError(f"head kernel {kernel.shape} does not fit {type(model).__name__}.fc {shape}")
    # host-side conversion and a plain transfer: no device program (jnp.asarray would compile a 'stage' per dtype)
    fc.kernel.set_value(jax.device_put(np.asarray(kernel, fc.kernel.get_value().dtype)))
    fc.bias.set_value(jax.device_put(np.asarray(bias, fc.bias.get_value().dtype)))
