"""The search-space language: domains, spaced objects and ``compile_space``.

Example::

    import jax, jaxgluon as ag
    nets = ag.Nets(['resnet18_v1', 'resnet34_v1', 'resnet50_v1'])
    optimizers = ag.Optimizers(['sgd', 'adam'])
    cs = ag.compile_space({'net': nets, 'optimizer': optimizers, 'batch_size': ag.Int(16, 64, log=True)})
    cs.sample(jax.random.key(0))
    # {'net': 'resnet34_v1', 'optimizer': {'name': 'adam', 'learning_rate': ..., 'wd': ..., ...}, 'batch_size': 23}
"""
from jaxgluon.space import optimizer
from jaxgluon.space.compiled import INACTIVE_VALUE, CompiledSpace, compile_space
from jaxgluon.space.domains import Bool, Categorical, Choice, Int, Linear, List, LogLinear, Real, Space, SpacedObject
from jaxgluon.space.nets import Nets
from jaxgluon.space.optimizer import Optimizers

__all__ = [
    "Real", "Int", "Categorical", "List", "Choice", "Bool", "LogLinear", "Linear", "Nets", "Optimizers",
    "compile_space", "CompiledSpace", "optimizer", "Space", "SpacedObject", "INACTIVE_VALUE",
]
