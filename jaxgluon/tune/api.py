"""``tune()``: hyperparameter search over any training function, in one call.

    import jaxgluon as ag

    def train_fn(config, reporter):
        for epoch in range(1, reporter.max_epochs + 1):
            reward = 1 - (config['lr'] - 0.1) ** 2 - 1 / epoch
            if reporter(epoch=epoch, reward=reward) != 'CONTINUE':
                return

    result = ag.tune(train_fn, {'lr': ag.Real(1e-3, 1, log=True)}, search_strategy='hyperband',
                     num_trials=20, epochs=9)
    result.best_config, result.best_reward, result.to_dataframe()
"""
from __future__ import annotations

import os
import pathlib
import pickle
import secrets
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

from jaxgluon.tune.executor import Executor, InProcessExecutor
from jaxgluon.tune.journal import check_sync_mode
from jaxgluon.tune.liveness import check_trial_timeout
from jaxgluon.tune.process_pool import ProcessPoolExecutor
from jaxgluon.tune.result import ExperimentResult
from jaxgluon.tune.runner import Runner
from jaxgluon.tune.stop import KeepSeconds, StopCriterion

_RESOURCE_KEYS = ("num_cpus", "num_devices")
_EXECUTORS = ("in_process", "process_pool", "ray")


def tune(
    train_fn: Callable[[dict, Any], Any],
    search_space: Any,
    search_strategy: Any = "random",
    num_trials: int | None = None,
    time_limits: float | None = None,
    epochs: int = 10,
    max_reward: float | None = None,
    num_workers: int = 1,
    resources_per_trial: dict | None = None,
    output_directory: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int = 0,
    scheduler_options: dict | None = None,
    executor: str | Executor | None = None,
    journal_sync: str = "group",
    callbacks: Sequence[Callable[[dict], Any]] | None = None,
    trial_timeout: float | str | None = "auto",
    population_size: int | str | None = None,
    ray_address: str | None = None,
    storage_path: str | os.PathLike | None = None,
    max_failures: int | None = None,
    keep_seconds: Callable[[Mapping[int, Any]], float | KeepSeconds | None] | None = None,
) -> ExperimentResult:
    """Search ``search_space`` for the config that maximises the reward ``train_fn`` reports.

    Args:
        train_fn: ``train_fn(config, reporter)``; calls ``reporter(epoch=, reward=, **metrics)`` once per epoch
            and returns when the answer is not ``'CONTINUE'`` (see ``jaxgluon.tune.reporter``). Must be
            picklable (a top-level function or a functools.partial of one) when trials run in worker processes.
        search_space: a dict of ``jaxgluon.space`` domains and constants, or its ``compile_space(...)`` (used as
            it is, not compiled again).
        search_strategy: 'random', 'grid', 'bayesopt' (FIFO: every trial runs ``epochs``), 'hyperband',
            'bayesopt_hyperband' (early stopping/promotion), or a scheduler or searcher object.
        num_trials, time_limits, max_reward: stop criteria (see ``StopCriterion``; with neither num_trials
            nor time_limits, 10 trials). ``time_limits`` (seconds) is hard and counts from this call (building
            the scheduler, the executor and the experiment folder included; ``metadata['time_used_s']`` is on the
            same clock): at the deadline running trials are told STOP at their next report (killed after a grace
            of 1 s) and the run returns; the overrun is in ``metadata['overrun_s']``.
        keep_seconds: with ``time_limits``, seconds to keep free at its end as a function of the trial records
            (``{trial_id: TrialRecord}``), asked after every report: the search winds down when the time left
            falls to it (``StopCriterion.keep``; ``task.fit(refit=True)`` keeps its refit's estimate this way). A
            ``KeepSeconds(seconds, least)`` also says the least of them the work needs: past the time left, the
            search winds down at once while that still fits, and keeps its time when not.
        epochs: epochs of a full trial (``reporter.max_epochs``; the schedulers' ``max_t``).
        num_workers: concurrent trials; more than 1 runs trials in a pool of worker processes.
        resources_per_trial: ``{'num_cpus': int, 'num_devices': int}`` per worker process (``num_gpus`` is
            accepted for ``num_devices``).
        output_directory: the experiment directory (journal, scheduler state, per-trial checkpoint dirs);
            default: a fresh ``./runs/<date>-<time>-<random>``.
        resume: continue the interrupted experiment in ``output_directory``.
        seed: seeds the searcher and each trial's ``reporter.seed``.
        scheduler_options: extra keyword arguments for ``jaxgluon.scheduler.get_scheduler`` (e.g.
            ``{'type': 'promotion', 'grace_period': 1, 'reduction_factor': 3, 'brackets': 1}``).
        executor: 'process_pool' (default): trials run in ``num_workers`` persistent worker processes, which
            keep their compiled programs and caches from trial to trial, die with the driver, and are killed and
            replaced when a trial hangs or crashes them. 'in_process': trials run in a thread of the driver (no
            process start-up or pickling; a hung trial is abandoned at the limits, not killed, and a trial that
            calls ``os._exit`` or crashes the interpreter ends the driver). 'ray': trials run in Ray actors on a
            cluster (``ray_address``; ``pip install 'jaxgluon[ray]'``). Or an ``Executor`` instance. A
            ``train_fn`` that worker processes cannot import (a lambda, a closure, a function typed into an
            interactive session or a script without an ``if __name__ == '__main__':`` guard) runs in-process,
            with a warning, unless ``executor='process_pool'`` is given.
        journal_sync: 'group' (default: every event is handed to the OS before the trial continues, so it
            survives a killed driver, and a background thread fsyncs it within milliseconds: group commit),
            'fsync' (every event on disk before the trial continues; one disk sync per decision) or 'flush'
            (handed to the OS only: survives a killed driver, not a power cut).
        callbacks: functions called with each journal event (a dict with ``event`` in 'session', 'start',
            'result', 'end', 'finish', plus its fields) right after it is recorded, e.g. a progress bar. A
            callback that raises is disabled with a warning; the experiment goes on.
        trial_timeout: seconds a running trial may go without reporting (from its start or its last report)
            before it is killed as hung and recorded as ERROR; the search goes on without it. 'auto' (default):
            ``time_limits`` until the first report of the experiment (1 h without time_limits), then 10 times the
            longest interval between reports seen, at least ``time_limits / 4`` (600 s without time_limits) and
            at most ``time_limits``. None: no limit. Independently, past ``time_limits`` every trial still
            running is killed after a grace of 1 s.
        population_size: train up to this many trials at once as one vmapped program (an int, or 'auto': as many
            as the device's free memory holds); needs a train function that can train populations, e.g.
            ``jaxgluon.train.PopulationTrial(spec)`` (see ``jaxgluon.tune.population_executor``).
        ray_address: with ``executor='ray'`` (implied when given), the Ray cluster that runs the trials: None (a
            running local cluster, else a new local Ray instance), 'auto' (a running cluster, else an error),
            '<host>:<port>' or 'ray://<host>:<port>'. Each trial runs in a Ray actor holding
            ``resources_per_trial`` (``num_cpus`` (default 1), ``num_gpus``, ``memory``, custom resources such as
            ``{'node2': 1}``); see ``jaxgluon.tune.ray_executor``.
        storage_path: the folder under which a fresh experiment directory is made (default ``./runs``), and a
            relative ``output_directory`` is placed. With Ray on several machines every node must reach it at the
            same path (a shared filesystem such as NFS): trials checkpoint into it.
        max_failures: with ``executor='ray'``, how often a trial whose actor or node dies is retried from its
            checkpoint before it is marked ERROR (default 3); each retry is journaled (a ``retry`` event).

    Returns:
        ExperimentResult with ``best_config``, ``best_reward``, ``trials``, ``metadata``, ``to_dataframe()``.

    Raises:
        AllTrialsFailedError: every trial ended in ERROR (the message holds the first failure's traceback).
    """
    started = time.monotonic()  # time_limits counts from the call: building the scheduler and executor counts
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int (epochs of a full trial), got {epochs!r}")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable as train_fn(config, reporter), got {train_fn!r}")
    stop = StopCriterion.from_args(num_trials, time_limits, max_reward, keep=keep_seconds)
    check_sync_mode(journal_sync)
    check_trial_timeout(trial_timeout)
    if resume and output_directory is None:
        raise ValueError("resume=True needs output_directory=<the experiment directory to continue>")
    experiment_dir = experiment_directory(output_directory, storage_path)
    if ray_address is not None and executor is None:
        executor = "ray"
    if executor != "ray" and (ray_address is not None or max_failures is not None):
        raise ValueError("ray_address and max_failures apply to executor='ray' (trials on a Ray cluster); got "
                         f"executor={executor!r}")
    scheduler, strategy_name = _make_scheduler(search_strategy, search_space, epochs, seed, scheduler_options)
    if population_size is not None:
        from jaxgluon.tune.population_executor import make_population_executor

        executor_obj = make_population_executor(population_size, executor, num_workers)
    else:
        executor_obj = _make_executor(executor, num_workers, resources_per_trial, train_fn, ray_address, max_failures)
    runner = Runner(train_fn, scheduler, executor_obj, experiment_dir, stop, max_epochs=epochs, seed=seed,
                    resume=resume, journal_sync=journal_sync,
                    settings={"search_strategy": strategy_name, "num_workers": executor_obj.capacity,
                              "scheduler_options": dict(scheduler_options or {})},
                    callbacks=callbacks or (), trial_timeout=trial_timeout, started=started)
    return runner.run()


def _fresh_directory(root: str | os.PathLike = "runs") -> pathlib.Path:
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return pathlib.Path(root) / name


def experiment_directory(output_directory: Any, storage_path: Any = None) -> pathlib.Path:
    """The experiment directory ``tune(output_directory=..., storage_path=...)`` uses: ``output_directory``
    (placed under ``storage_path`` when relative), or a fresh one under ``runs/`` (or ``storage_path``) when it is
    None. Passed back as ``output_directory`` with the same ``storage_path``, it names the same directory: a caller
    that must know where the trials write (``task.fit``'s ensemble forecast) names it first."""
    if storage_path is None:
        return pathlib.Path(output_directory) if output_directory is not None else _fresh_directory()
    if output_directory is None:
        return _fresh_directory(pathlib.Path(storage_path).absolute())
    root, given = pathlib.Path(storage_path).absolute(), pathlib.Path(output_directory)
    if given.is_absolute() and root not in given.absolute().parents:
        raise ValueError(f"output_directory={str(given)!r} is not inside storage_path={str(root)!r}; give a relative "
                         "output_directory (placed under storage_path) or one of the two")
    return root / given


def _make_scheduler(search_strategy: Any, search_space: Any, epochs: int, seed: int,
                    scheduler_options: dict | None) -> tuple[Any, str]:
    from jaxgluon.scheduler import FIFOScheduler, TrialScheduler, get_scheduler
    from jaxgluon.scheduler.base import is_searcher

    options = dict(scheduler_options or {})
    if isinstance(search_strategy, str):
        options.setdefault("max_t", epochs)
        options.setdefault("seed", seed)
        if options["max_t"] != epochs:
            raise ValueError(f"scheduler_options['max_t']={options['max_t']} differs from epochs={epochs}; "
                             "set epochs only")
        return get_scheduler(search_strategy, search_space, **options), search_strategy
    if options:
        raise ValueError("scheduler_options only apply to a search_strategy given by name; configure the "
                         f"{type(search_strategy).__name__} object itself")
    if isinstance(search_strategy, TrialScheduler) or callable(getattr(search_strategy, "on_trial_add", None)):
        max_t = getattr(search_strategy, "max_t", None)
        if max_t is not None and max_t != epochs:
            raise ValueError(f"the scheduler has max_t={max_t} but tune() got epochs={epochs}; make them equal")
        return search_strategy, type(search_strategy).__name__
    if is_searcher(search_strategy):
        return FIFOScheduler(search_strategy, max_t=epochs, seed=seed), type(search_strategy).__name__
    raise TypeError(f"search_strategy must be a name ('random', 'grid', 'bayesopt', 'hyperband', "
                    f"'bayesopt_hyperband'), a scheduler or a searcher object; got {search_strategy!r}")


def worker_import_problem(train_fn: Any) -> str | None:
    """Why worker processes could not load ``train_fn`` (None when they can)."""
    try:
        data = pickle.dumps(train_fn)
    except Exception as err:  # noqa: BLE001 -- pickle raises several types
        return f"it cannot be pickled ({type(err).__name__}: {err})"
    if b"__main__" not in data:
        return None
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not os.path.exists(path):
        return "it is defined in an interactive session or a notebook, which worker processes cannot import"
    try:
        guarded = "__name__" in pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        guarded = False
    if not guarded:
        return (f"it is defined in {path}, a script without an `if __name__ == '__main__':` guard, which each "
                "worker process would run again")
    return None


def _make_executor(executor: str | Executor | None, num_workers: int, resources_per_trial: dict | None,
                   train_fn: Any = None, ray_address: str | None = None, max_failures: int | None = None) -> Executor:
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
    if executor == "ray":  # Ray resources: num_cpus, num_gpus, memory and custom ones (validated there)
        from jaxgluon.tune.ray_executor import DEFAULT_MAX_FAILURES, RayExecutor

        return RayExecutor(num_workers, resources_per_trial, address=ray_address,
                           max_failures=DEFAULT_MAX_FAILURES if max_failures is None else max_failures)
    resources = dict(resources_per_trial or {})
    if "num_gpus" in resources:
        resources.setdefault("num_devices", resources.pop("num_gpus"))
    unknown = sorted(set(resources) - set(_RESOURCE_KEYS))
    if unknown:
        raise ValueError(f"unknown resources_per_trial keys {unknown}; valid keys are {list(_RESOURCE_KEYS)}")
    if isinstance(executor, Executor):
        return executor
    if executor is None:
        executor = "process_pool"
        problem = worker_import_problem(train_fn) if train_fn is not None else None
        if problem is not None and num_workers == 1:
            warnings.warn(f"train_fn runs in the driver's process (executor='in_process'): {problem}. A hung trial "
                          "can then only be abandoned, not killed, and a crashing one ends the search; define "
                          "train_fn at the top level of an importable module (or a guarded script) to run trials "
                          "in a worker process", RuntimeWarning, stacklevel=3)
            executor = "in_process"
    if executor == "in_process":
        if num_workers != 1:
            raise ValueError(f"executor='in_process' runs one trial at a time; got num_workers={num_workers}. "
                             "Use executor='process_pool' for concurrent trials")
        return InProcessExecutor(requested_resources=resources or None)
    if executor == "process_pool":
        return ProcessPoolExecutor(num_workers, num_cpus=resources.get("num_cpus"),
                                   num_devices=resources.get("num_devices", 0))
    raise ValueError(f"executor must be one of {_EXECUTORS} or an Executor instance, got {executor!r}")
