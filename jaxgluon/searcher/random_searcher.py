"""Random search: draws from the space's prior with balanced categorical choices, never repeating a config."""
from __future__ import annotations

from typing import Any

from jaxgluon.searcher.base import Searcher, logger


class RandomSearcher(Searcher):
    """Draws configs from the prior of ``search_space``.

    Each categorical's choices are drawn in balance (``jaxgluon.searcher._balance``): a suggestion takes the
    least-drawn choice so far, picked at random among the least drawn, so ``k`` suggestions over ``k`` choices try
    each once (4 independent draws over 3 nets miss one 5 times in 9); every choice keeps probability ``1/k`` and
    real and integer values are plain prior draws. It never returns a config that was already suggested
    (completed, pending or failed); on a finite space it returns None once every config has been suggested. The
    ``i``-th suggestion depends only on ``seed``, ``i`` and the suggestions before it, so a restored searcher
    continues with the same sequence.

    >>> import jaxgluon as ag
    >>> s = RandomSearcher({'opt': ag.Categorical('sgd', 'adam')}, seed=0)
    >>> sorted(s.suggest()['opt'] for _ in range(2)), s.suggest()
    (['adam', 'sgd'], None)
    """

    def suggest(self, trial_id: int | None = None) -> Any | None:
        self._check_trial_id(trial_id)
        seen = self._seen_keys()
        size = self.space.size
        if size is not None and len(seen) >= size:
            return None
        config = self._unseen_prior_draw(lambda _: self._next_key(), seen)
        if config is None:
            logger.warning("RandomSearcher: found no new config in %d draws; treating the space as exhausted", 1 << 18)
            return None
        self._mark_pending(trial_id, config)
        return config
