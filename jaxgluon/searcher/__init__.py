"""Searchers: propose configurations and learn from their rewards (they never run or stop trials).

    import jaxgluon as ag
    from jaxgluon.searcher import get_searcher
    searcher = get_searcher('bayesopt', {'lr': ag.LogLinear(1e-4, 1e-1), 'opt': ag.Categorical('sgd', 'adam')})
    for trial_id in range(20):
        config = searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, config, reward=evaluate(config))

Names for :func:`get_searcher`: ``'random'`` (:class:`RandomSearcher`), ``'grid'`` (:class:`GridSearcher`),
``'bayesopt'`` (:class:`GPSearcher`).
"""
from __future__ import annotations

from typing import Any

from jaxgluon.searcher.base import Searcher, config_key
from jaxgluon.searcher.gp_searcher import GPSearcher, default_num_initial_random
from jaxgluon.searcher.grid_searcher import GridSearcher
from jaxgluon.searcher.random_searcher import RandomSearcher

SEARCHERS: dict[str, type[Searcher]] = {"random": RandomSearcher, "grid": GridSearcher, "bayesopt": GPSearcher}


def get_searcher(name: str, search_space: Any, **kwargs: Any) -> Searcher:
    """The searcher registered under ``name``, built as ``Cls(search_space, **kwargs)``.

    >>> import jaxgluon as ag
    >>> type(get_searcher('grid', {'x': ag.Real(0, 1)}, points_per_dim=3)).__name__
    'GridSearcher'
    """
    if name not in SEARCHERS:
        raise ValueError(f"unknown searcher {name!r}; valid names are {sorted(SEARCHERS)}")
    return SEARCHERS[name](search_space, **kwargs)


__all__ = ["Searcher", "RandomSearcher", "GridSearcher", "GPSearcher", "get_searcher", "SEARCHERS",
           "config_key", "default_num_initial_random"]
