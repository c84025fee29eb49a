"""What the members of a population share and what is each member's own (``jaxgluon.train.population``).

Configs share a population when their ``population_key`` is equal: the net, the image size and the batch size
shape the compiled program. Everything else a config sets (optimizer kind and numbers, schedule, label smoothing,
the frozen-BatchNorm flag) is the member's slice of the stacked state, written by ``with_hyperparams``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jaxgluon.train.optim import TrialConfig, trial_hyperparams
from jaxgluon.train.state import TrainState, step_hparams
from jaxgluon.train.trial import TrialSpec

#: The config key that asks a trial to start as a copy of another trial (PBT's exploit); see ``population_fn``.
CLONE_KEY = "pbt_clone"


def population_key(config: Mapping[str, Any], spec: TrialSpec) -> tuple:
    """What configs must share to train in one population: everything that shapes the program (the net, the
    image size, the batch size). Optimizer, schedule and their numbers are state, so they may differ.

    >>> spec = TrialSpec(train_data='digits', image_size=8)
    >>> a = population_key({'net': 'cifar_resnet20_v1', 'optimizer': {'name': 'sgd', 'learning_rate': 0.1}}, spec)
    >>> a == population_key({'net': 'cifar_resnet20_v1', 'lr_scheduler': 'poly', 'label_smoothing': 0.1,
    ...                      'optimizer': {'name': 'adamw', 'learning_rate': 0.01}}, spec)
    True
    >>> a == population_key({'net': 'cifar_resnet56_v1'}, spec)
    False
    """
    trial = TrialConfig.from_dict(strip_clone(config))
    return (trial.net, spec.image_size, trial.batch_size or spec.batch_size)


def strip_clone(config: Mapping[str, Any]) -> dict:
    """``config`` without the PBT clone instruction."""
    return {k: v for k, v in config.items() if k != CLONE_KEY}


def with_hyperparams(state: TrainState, trial: TrialConfig, steps_per_epoch: int, epochs: int,
                     freeze_batchnorm: bool) -> TrainState:
    """``state`` (one member) with ``trial``'s optimizer hyperparameters (``optim.trial_hyperparams``: kind,
    numbers, schedule) and step hyperparameters (label smoothing, the frozen-BatchNorm flag)."""
    opt = state.opt_state
    hyper = trial_hyperparams(trial, steps_per_epoch, epochs)
    new = {k: np.asarray(hyper[k], dtype=np.asarray(v).dtype) for k, v in opt.hyperparams.items()}
    return state.replace(opt_state=opt._replace(hyperparams=new),
                         hparams=step_hparams(trial.label_smoothing, freeze_batchnorm))
