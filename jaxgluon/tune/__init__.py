"""Hyperparameter search over any training function: ``tune()``, its reporter protocol, runner and executors.

    from jaxgluon.tune import tune
    result = tune(train_fn, {'lr': Real(1e-3, 1, log=True)}, search_strategy='hyperband', num_trials=20, epochs=9)

``jaxgluon.tune.sim`` holds the simulated backend (simulated clock and blackboxes).
"""
from jaxgluon.tune.api import tune
from jaxgluon.tune.executor import Executor, InProcessExecutor, TrialLaunch, TrialOutcome
from jaxgluon.tune.process_pool import ProcessPoolExecutor
from jaxgluon.tune.reporter import Reporter, TrialStopped
from jaxgluon.tune.result import AllTrialsFailedError, ExperimentResult
from jaxgluon.tune.stop import StopCriterion

__all__ = ["tune", "TrialStopped", "ExperimentResult", "AllTrialsFailedError", "StopCriterion", "Reporter",
           "Executor", "InProcessExecutor", "ProcessPoolExecutor", "TrialLaunch", "TrialOutcome"]
