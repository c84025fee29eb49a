"""Hyperparameter search over any training function: ``tune()``, its reporter protocol, runner and executors.

    import jaxgluon as ag
    result = ag.tune(train_fn, {'lr': ag.Real(1e-3, 1, log=True)}, search_strategy='hyperband', num_trials=20,
                     epochs=9)
    # equivalently: from jaxgluon.tune import tune

The attribute ``jaxgluon.tune`` is the function :func:`jaxgluon.tune.api.tune` (``jaxgluon/__init__.py`` binds it
after importing this package); reach this package and its submodules by import, e.g.
``from jaxgluon.tune.sim import simulate``.
"""
from jaxgluon.tune.api import tune
from jaxgluon.tune.executor import Executor, InProcessExecutor, TrialLaunch, TrialOutcome
from jaxgluon.tune.population_executor import PopulationExecutor
from jaxgluon.tune.process_pool import ProcessPoolExecutor
from jaxgluon.tune.ray_executor import RayExecutor  # imports ray only when used
from jaxgluon.tune.reporter import Reporter, TrialStopped
from jaxgluon.tune.result import AllTrialsFailedError, ExperimentResult
from jaxgluon.tune.stop import KeepSeconds, StopCriterion

__all__ = ["tune", "TrialStopped", "ExperimentResult", "AllTrialsFailedError", "StopCriterion", "KeepSeconds",
           "Reporter", "Executor", "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor",
           "PopulationExecutor", "TrialLaunch", "TrialOutcome"]
