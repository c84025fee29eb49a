"""Trial schedulers: which trial runs next and when it stops, pauses or is resumed.

    >>> from jaxgluon.scheduler import get_scheduler
    >>> from jaxgluon.space import Real, Int
    >>> space = {'lr': Real(1e-4, 1e-1, log=True), 'layers': Int(1, 4)}
    >>> scheduler = get_scheduler('hyperband', space, max_t=27, type='promotion')
    >>> scheduler.rung_levels
    (1, 3, 9, 27)

A scheduler owns a searcher (built from a search space and a strategy name, or passed in as an object) and
never calls the runner: the runner asks ``suggest()`` and obeys the Decision that ``on_trial_result`` returns.
"""
from __future__ import annotations

from typing import Any

from jaxgluon.scheduler._rungs import bracket_probabilities, bracket_rung_levels, rung_levels
from jaxgluon.scheduler.base import Decision, Trial, TrialScheduler, TrialStatus, TrialSuggestion
from jaxgluon.scheduler.fifo import FIFOScheduler
from jaxgluon.scheduler.hyperband import HyperbandScheduler
from jaxgluon.scheduler.pbt import PBTScheduler

SCHEDULERS = ("random", "grid", "bayesopt", "hyperband", "bayesopt_hyperband", "pbt")


def get_scheduler(name: str, search_space: Any, **kwargs: Any) -> TrialScheduler:
    """Build a scheduler by strategy name.

    'random', 'grid', 'bayesopt': FIFO with that searcher. 'hyperband': asynchronous Hyperband with a random
    searcher (``type='stopping'`` or ``'promotion'``). 'bayesopt_hyperband': Hyperband whose new configs come from
    the GP searcher fitted on rung-level results (``multi_fidelity=True``). 'pbt': Population Based Training
    (``PBTScheduler``: exploit/explore every ``perturbation_interval`` epochs). ``search_space`` may also be a
    searcher object. Keyword arguments go to the scheduler (and unknown ones on to the searcher).
    """
    if name in ("random", "grid", "bayesopt"):
        if "type" in kwargs:
            raise ValueError(f"'type' is a Hyperband option; search strategy {name!r} uses FIFO scheduling. "
                             "Use 'hyperband' or 'bayesopt_hyperband' for early stopping")
        return FIFOScheduler(search_space, search_strategy=name, **kwargs)
    if name == "hyperband":
        return HyperbandScheduler(search_space, search_strategy="random", **kwargs)
    if name == "bayesopt_hyperband":
        from jaxgluon.scheduler.base import is_searcher

        if not is_searcher(search_space):
            kwargs.setdefault("multi_fidelity", True)
        return HyperbandScheduler(search_space, search_strategy="bayesopt", **kwargs)
    if name == "pbt":
        return PBTScheduler(search_space, search_strategy="random", **kwargs)
    raise ValueError(f"unknown search strategy {name!r}; valid names are {', '.join(SCHEDULERS)}")


__all__ = ["Decision", "Trial", "TrialStatus", "TrialSuggestion", "TrialScheduler", "FIFOScheduler", "HyperbandScheduler",
           "PBTScheduler", "get_scheduler", "SCHEDULERS", "rung_levels", "bracket_rung_levels", "bracket_probabilities"]
