"""First-in-first-out scheduling: every trial runs to completion (concurrently when there are several workers).

    >>> from jaxgluon.scheduler import FIFOScheduler, Trial
    >>> from jaxgluon.space import Real
    >>> scheduler = FIFOScheduler({'lr': Real(1e-3, 1.0, log=True)}, search_strategy='random', max_t=2)
    >>> s = scheduler.suggest()
    >>> scheduler.on_trial_result(Trial(s.trial_id, s.config), {'epoch': 1, 'reward': 0.5})
    <Decision.CONTINUE: 'CONTINUE'>
"""
from __future__ import annotations

from typing import Any

from jaxgluon.scheduler.base import Decision, TrialScheduler


class FIFOScheduler(TrialScheduler):
    """Runs each suggested config to ``max_t`` epochs; STOP only once a trial reaches ``max_t``.

    Every reported epoch is forwarded to the searcher (``on_trial_result``); the final reward goes to
    ``on_trial_complete``.
    """

    name = "fifo"

    def __init__(self, searcher_or_space: Any, search_strategy: str = "random", max_t: int | None = None,
                 mode: str = "max", seed: int = 0, **searcher_options: Any) -> None:
        super().__init__(searcher_or_space, search_strategy=search_strategy, max_t=max_t, mode=mode, seed=seed,
                         **searcher_options)

    def _decide(self, trial_id: int, epoch: int, reward: float) -> Decision:
        record = self._trials[trial_id]
        self.searcher.on_trial_result(trial_id, record["config"], reward, epoch)
        if self.max_t is not None and epoch >= self.max_t:
            return Decision.STOP
        return Decision.CONTINUE
