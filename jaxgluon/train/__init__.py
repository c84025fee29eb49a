"""Training: optimizers and schedules from a config, pure data-parallel steps, checkpoints, the trial function.

Example::

    from functools import partial
    from jaxgluon.train import TrialCaches, TrialSpec, train_trial, load_trained
    spec = TrialSpec(train_data="data/train", image_size=64, batch_size=32)
    train_fn = partial(train_trial, spec=spec, caches=TrialCaches())   # what jaxgluon.tune runs, one call per trial
    ...
    model = load_trained(trial_checkpoint_dir)     # best epoch; model.predict_proba(images), model.evaluate(source)
"""
from jaxgluon.train.caches import PROCESS_CACHES, TrialCaches
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.compile_cache import default_cache_dir, disable_compilation_cache, enable_compilation_cache
from jaxgluon.train.local_reporter import LocalReporter
from jaxgluon.train.optim import (SCHEDULES, TRIAL_DEFAULTS, TrialConfig, make_optimizer, make_schedule,
                                  optimizer_config)
from jaxgluon.train.state import TrainState, create_train_state
from jaxgluon.train.steps import (CompiledSteps, compile_steps, cross_entropy, eval_step, make_mesh, pad_batch,
                                  sum_metrics, train_step)
from jaxgluon.train.population import Population
from jaxgluon.train.population_fn import PopulationTrial
from jaxgluon.train.trained import TrainedModel, load_trained
from jaxgluon.train.trial import TrialSpec, load_source, save_array_dataset, train_trial

__all__ = [
    "SCHEDULES", "TRIAL_DEFAULTS", "CompiledSteps", "LocalReporter", "TrainState", "TrainedModel", "TrialCheckpointer",
    "TrialConfig",
    "TrialSpec", "TrialCaches", "PROCESS_CACHES", "compile_steps", "create_train_state", "cross_entropy", "default_cache_dir",
    "disable_compilation_cache", "enable_compilation_cache", "eval_step", "load_source", "load_trained",
    "make_mesh", "make_optimizer", "make_schedule", "optimizer_config", "pad_batch", "save_array_dataset",
    "Population", "PopulationTrial",
    "sum_metrics", "train_step", "train_trial",
]
