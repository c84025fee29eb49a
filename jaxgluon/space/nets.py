"""``Nets``: a categorical choice of network names; a sampled config is the name string.

Example::

    import jaxgluon as ag
    nets = ag.Nets(['resnet18_v1', 'resnet34_v1', 'resnet50_v1'])
    print(nets)     # Nets(['resnet18_v1', 'resnet34_v1', 'resnet50_v1'])
"""
from __future__ import annotations

from typing import Sequence

from jaxgluon.space.domains import Categorical

__all__ = ["Nets"]


class Nets(Categorical):
    """A choice among network names (strings that ``jaxgluon.models.get_model`` knows).

    >>> Nets(['resnet18_v1', 'mobilenet_v2']).choices
    ('resnet18_v1', 'mobilenet_v2')
    """

    __slots__ = ()

    def __init__(self, names: Sequence[str]) -> None:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ValueError(f"Nets: names must be a list of network names, got {names!r}; "
                             f"e.g. Nets(['resnet18_v1', 'resnet34_v1'])")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ValueError(f"Nets: names[{i}]={name!r} is not a network name (a non-empty string)")
        super().__init__(*names)

    def _repr_parts(self):
        return "Nets", [(None, list(self.choices))]
