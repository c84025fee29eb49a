"""The compiled programs of a population (``jaxgluon.train.population``): the ordinary ``train_step`` and
``eval_predict_step`` (``jaxgluon.train.steps``) over a leading member axis, and the slot read/write programs.

``chunk``: how many members one ``jax.vmap`` covers; the program loops (``jax.lax.map``) over such groups, and
None puts every member in one vmap. ``lowering``: 'auto' keeps ``models.layers.conv2d``'s per-backend choice of
convolution; 'xla' or 'im2col' forces one while the program is traced.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgluon.models.layers import forced_lowering
from jaxgluon.train.state import TrainState
from jaxgluon.train.steps import eval_predict_step, train_step


def member_programs(chunk: int | None, shared_batches: bool, lowering: str = "auto") -> tuple[Callable, ...]:
    """``(train, evaluate, put, take)``, jitted: ``train(stacked, batch)`` advances every member one step
    (``batch`` has a member axis unless ``shared_batches``; the stacked state is donated), ``evaluate(stacked,
    batch)`` scores every member on one shared batch (sums and per-row probabilities ``[M, B, C]``),
    ``put(stacked, k, member)`` writes slot ``k`` (donating ``stacked``), ``take(stacked, k)`` reads it."""
    group = chunk if chunk is not None and chunk > 1 else None

    def traced(fn):   # the program's convolutions as ``lowering`` says (read when the program is traced)
        if lowering == "auto":
            return fn

        def with_lowering(*args):
            with forced_lowering(lowering):
                return fn(*args)
        return with_lowering

    @traced
    def step(state, batch):  # the ordinary train_step: it reads each member's hparams from its state
        if chunk is None:
            return jax.vmap(train_step, in_axes=(0, None if shared_batches else 0))(state, batch)
        if shared_batches:
            return jax.lax.map(lambda s: train_step(s, batch), state, batch_size=group)
        return jax.lax.map(lambda a: train_step(*a), (state, batch), batch_size=group)

    @traced
    def evaluate(state, batch):
        if chunk is None:
            return jax.vmap(eval_predict_step, in_axes=(0, None))(state, batch)
        return jax.lax.map(lambda s: eval_predict_step(s, batch), state, batch_size=group)

    put = jax.jit(lambda stacked, k, member: jax.tree.map(lambda s, m: s.at[k].set(m), stacked, member),
                  donate_argnums=0)
    take = jax.jit(lambda stacked, k: jax.tree.map(lambda s: s[k], stacked))
    return jax.jit(step, donate_argnums=0), jax.jit(evaluate), put, take


def abstract_args(k: int, template: TrainState, batch_size: int, image_size: int,
                  shared_batches: bool) -> tuple[Any, dict]:
    """Shapes of ``(stacked state of k members, batch)`` to compile ahead of time; a shared batch has no member
    axis."""
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((k,) + x.shape, x.dtype), template)
    lead = () if shared_batches else (k,)
    b, s = batch_size, image_size
    batch = {"image": jax.ShapeDtypeStruct(lead + (b, s, s, 3), jnp.float32),
             "label": jax.ShapeDtypeStruct(lead + (b,), jnp.int32),
             "mask": jax.ShapeDtypeStruct(lead + (b,), jnp.bool_)}
    return state, batch
