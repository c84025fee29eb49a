"""model_flops (from the layers' shapes) against XLA's CPU cost analysis of the same computation."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxgluon.models import get_model
from jaxgluon.models.registry import abstract_model
from jaxgluon.models.flops import model_flops
from jaxgluon.models.layers import forced_lowering
from jaxgluon.train.optim import make_optimizer
from jaxgluon.train.state import create_train_state
from jaxgluon.train.steps import eval_step, train_step


def xla_flops(fn, *args) -> float:
    with forced_lowering("xla"):   # oneDNN's custom calls would count as zero
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


@pytest.mark.parametrize("name,shape", [("cifar_resnet20_v1", (2, 16, 16, 3)), ("resnet18_v1", (2, 64, 64, 3)),
                                        ("efficientnet_lite0", (1, 32, 32, 3))])
def test_model_flops_match_xla_cost_analysis(name, shape):
    flops = model_flops(abstract_model(name, 10), shape)
    # XLA's cost analysis needs only shapes: the train state is abstract too, so no random initialiser compiles
    state = jax.eval_shape(lambda: create_train_state(get_model(name, 10, pretrained=False),
                                                      make_optimizer({"optimizer": "sgd"}, 10, 1)))
    batch = {"image": jnp.zeros(shape), "label": jnp.zeros(shape[0], jnp.int32), "mask": jnp.ones(shape[0], bool)}
    # forward: tight. XLA counts the convolutions' valid taps (no zero padding) plus a little elementwise work
    assert 1.0 <= xla_flops(eval_step, state, batch) / flops.forward_unpadded < 1.06
    assert flops.forward > flops.forward_unpadded and flops.dense_layers == 1
    # train step: loose, XLA prices the padding of the backward convolutions its own way (and a grouped
    # convolution's weight gradient as an ungrouped one)
    if name != "efficientnet_lite0":
        assert 0.75 < xla_flops(train_step, state, batch) / flops.train_step < 1.3
    assert 2.5 * flops.forward < flops.train_step < 3 * flops.forward


def test_resnet50_flops_are_the_published_figure():
    """ResNet-50 at 224 px: ~4.1 GMAC (8.2 GFLOP) forward per image, ~24.6 GFLOP per trained image."""
    flops = model_flops(abstract_model("resnet50_v1b", 1000), (1, 224, 224, 3))   # shapes only
    assert flops.forward == pytest.approx(8.2e9, rel=0.03)
    assert flops.train_step == pytest.approx(24.5e9, rel=0.03)
