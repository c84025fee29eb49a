"""Hyperparameter search over any training function: ``tune()``, its reporter protocol, runner and executors.

    import jaxgluon as ag
    result = ag.tune(train_fn, {'lr': ag.Real(1e-3, 1, log=True)}, search_strategy='hyperband', num_trials=20,
                     epochs=9)
    # equivalently: from jaxgluon.tune import tune

``jaxgluon.tune`` is both this package and callable as ``tune()``: once any submodule (e.g. ``jaxgluon.tune.sim``,
the simulated backend) is imported, Python binds the attribute ``jaxgluon.tune`` to the package itself, so the
package forwards calls to :func:`jaxgluon.tune.api.tune`.
"""
import sys
import types

from jaxgluon.tune.api import tune
from jaxgluon.tune.executor import Executor, InProcessExecutor, TrialLaunch, TrialOutcome
from jaxgluon.tune.population_executor import PopulationExecutor
from jaxgluon.tune.process_pool import ProcessPoolExecutor
from jaxgluon.tune.ray_executor import RayExecutor  # imports ray only when used
from jaxgluon.tune.reporter import Reporter, TrialStopped
from jaxgluon.tune.result import AllTrialsFailedError, ExperimentResult
from jaxgluon.tune.stop import StopCriterion

__all__ = ["tune", "TrialStopped", "ExperimentResult", "AllTrialsFailedError", "StopCriterion", "Reporter",
           "Executor", "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor",
           "PopulationExecutor", "TrialLaunch", "TrialOutcome"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
