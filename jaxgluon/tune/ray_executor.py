"""Trials on a Ray cluster: each runs in a Ray actor that holds its ``resources_per_trial``; the driver decides.

Ray only places and runs trials. The scheduler, the searcher, the journal and ``resume=True`` stay in the driver
(``jaxgluon.tune.runner``), exactly as with the local executors. ``num_workers`` persistent actors (spread over
the cluster's nodes) each run one trial at a time and keep their compiled programs from trial to trial; an actor
that Ray has placed and that is idle gets the next trial at once, so an actor still waiting for resources never
holds a trial back. A trial's reports travel to the driver by an actor call that also carries the scheduler's
decision back: the trial waits for it before its next epoch.

Faults: an actor whose process or node dies (``ray.exceptions.RayActorError``) has its trial retried, from the
trial's own checkpoint directory, on a fresh actor (wherever Ray places it), up to ``max_failures`` times; each
retry is handed to ``on_retry`` (the runner journals it). Past ``max_failures`` the trial ends in ERROR and the
search goes on. A report the trial wrote to its ``reports.jsonl`` but never delivered is delivered before the
retry. Actors belong to the driver: Ray kills them when the driver dies, and a resumed driver reattaches to the
cluster (``ray_address``) and restarts the interrupted trials from their checkpoints.

Storage: trial directories (checkpoints, ``reports.jsonl``) live in the experiment directory, which every node
must reach at the same path (one machine: any local folder; several: a shared filesystem such as NFS mounted at
the same path everywhere). An actor on a node that cannot see it fails its trial with an error saying so, rather
than writing checkpoints to that node's local disk.

    executor = RayExecutor(num_workers=2, resources_per_trial={'num_cpus': 1, 'num_gpus': 0}, address='auto')
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import queue
import socket
import threading
import time
import traceback as traceback_module
from typing import Any, Callable

from jaxgluon.tune.executor import Executor, ReportCallback, TrialLaunch, TrialOutcome, run_trial
from jaxgluon.tune.ray_connect import (DEFAULT_MAX_FAILURES, INSTALL_HINT, actor_env, check_max_failures,
                                       check_resources, connect, import_ray)
from jaxgluon.tune.reporter import read_reports

LONG_POLL_S = 2.0  # an idle actor call returns after this long without messages (then the driver asks again)


class TrialActor:
    """Runs trials one after the other in a thread of a Ray worker process (made a Ray actor by ``RayExecutor``).
    Messages to the driver: ``('started', trial_id, placement)``, ``('report', trial_id, result)`` (the trial then
    waits for the decision), ``('done', outcome_dict)``."""

    def __init__(self, train_fn_bytes: bytes, env: dict[str, str]) -> None:
        os.environ.update(env)
        self._outbox: queue.Queue = queue.Queue()
        self._inbox: queue.Queue = queue.Queue()
        self._fences: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        try:
            from ray import cloudpickle

            self._train_fn = cloudpickle.loads(train_fn_bytes)
            self._load_error: tuple[str, str] | None = None
        except Exception as err:  # noqa: BLE001 -- reported with each trial this actor is given
            self._train_fn = None
            self._load_error = (f"the Ray actor on node {socket.gethostname()} could not load train_fn "
                                f"({type(err).__name__}: {err}); its module must be importable on every node (install "
                                "it there) or the function must be pickled by value "
                                "(ray.cloudpickle.register_pickle_by_value(module))", traceback_module.format_exc())

    def placement(self) -> dict:
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                "hostname": socket.gethostname(), "pid": os.getpid(),
                "gpu_ids": [str(g) for g in context.get_accelerator_ids().get("GPU", [])],
                "assigned": {k: float(v) for k, v in context.get_assigned_resources().items()}}

    def run(self, launch: dict, timeout: float) -> list:
        """Start a trial and return its first messages (waiting up to ``timeout`` seconds for one)."""
        self._thread = threading.Thread(target=self._main, args=(TrialLaunch(**launch),), daemon=True,
                                        name="jaxgluon-ray-trial")
        self._thread.start()
        return self.exchange(None, timeout)

    def exchange(self, decision: str | None, timeout: float) -> list:
        """Hand ``decision`` to the waiting trial (if any), then return the messages it sends within ``timeout``."""
        if decision is not None:
            self._inbox.put(decision)
        messages = []
        try:
            messages.append(self._outbox.get(timeout=timeout))
            while messages[-1][0] != "report":
                messages.append(self._outbox.get_nowait())
        except queue.Empty:
            pass
        return messages

    def _send(self, trial_id: int, result: dict) -> str:
        self._outbox.put(("report", trial_id, result))
        return self._inbox.get()

    def _main(self, launch: TrialLaunch) -> None:
        from jaxgluon.tune.process_pool import hold_fence

        try:
            self._outbox.put(("started", launch.trial_id, self.placement()))
            trials_dir = pathlib.Path(launch.checkpoint_dir).parent
            if not trials_dir.is_dir():
                message = (f"node {socket.gethostname()} cannot see the experiment directory ({trials_dir} is missing "
                           "there): with Ray on several machines the experiment directory (storage_path or "
                           "output_directory) must be on a filesystem every node mounts at the same path (e.g. NFS)")
                outcome = TrialOutcome(launch.trial_id, error=message, traceback=message)
            elif self._train_fn is None:
                assert self._load_error is not None
                outcome = TrialOutcome(launch.trial_id, error=self._load_error[0], traceback=self._load_error[1])
            else:
                hold_fence(launch.fence, self._fences)
                outcome = run_trial(self._train_fn, launch, lambda result: self._send(launch.trial_id, result))
        except BaseException as err:  # noqa: BLE001 -- SystemExit/KeyboardInterrupt in the trial: it ends, in ERROR
            outcome = TrialOutcome(launch.trial_id, error=f"{type(err).__name__}: {err}",
                                   traceback=traceback_module.format_exc())
        self._outbox.put(("done", dataclasses.asdict(outcome)))


@dataclasses.dataclass
class _Slot:
    index: int
    actor: Any
    starting: Any = None  # the placement() call while Ray places and starts the actor
    placement: dict | None = None  # where it runs, once started
    launch: TrialLaunch | None = None
    call: Any = None  # the pending run()/exchange() call of its trial
    cancelled: bool = False


class RayExecutor(Executor):
    """``num_workers`` Ray actors, each running one trial at a time with ``resources_per_trial``.

    Args:
        num_workers: concurrent trials (at most; fewer while the cluster lacks the resources for all actors).
        resources_per_trial: see :func:`check_resources` (default one CPU, no GPU).
        address: the cluster (see :func:`connect`); ignored when this process is already connected to Ray.
        max_failures: retries of a trial whose actor or node dies, from its checkpoint; then ERROR.
        scheduling_strategy: Ray's placement of the actors: 'SPREAD' (default: over the nodes) or 'DEFAULT'.
    """

    reports_start = True

    name = "ray"

    def __init__(self, num_workers: int = 1, resources_per_trial: dict | None = None, address: str | None = None,
                 max_failures: int = DEFAULT_MAX_FAILURES, scheduling_strategy: str = "SPREAD") -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        if address is not None and not isinstance(address, str):
            raise ValueError(f"ray_address must be None, 'auto', '<host>:<port>' or 'ray://<host>:<port>', got "
                             f"{address!r}")
        self.num_workers, self.address = num_workers, address
        self.request = check_resources(resources_per_trial)
        self.max_failures = check_max_failures(max_failures)
        self.scheduling_strategy = scheduling_strategy
        import_ray()  # fail now, with the fix, rather than when the search starts
        self._ray: Any = None
        self._connected_here = False
        self._actor_class: Any = None
        self._train_fn_bytes: bytes | None = None
        self._on_report: ReportCallback | None = None
        self._slots: list[_Slot] = []
        self._queue: list[TrialLaunch] = []  # submitted, waiting for an idle started actor
        self._ended: list[TrialOutcome] = []  # outcomes decided outside an actor call, returned by the next poll
        self._failures: dict[int, int] = {}
        # trial_id -> (lines in its reports.jsonl at launch, reports answered since, the last decision)
        self._sent: dict[int, tuple[int, int, str | None]] = {}
        self._cluster: dict = {}
        self.trial_nodes: dict[int, list[str]] = {}
        self.placements: list[dict] = []  # each started actor: node, pid, the resources and GPU ids Ray assigned it
        self.num_actors_started = 0
        self._start_failures = 0
        self.num_retries = 0
        self.num_killed = 0

    # ---- Executor interface ------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.num_workers

    @property
    def num_running(self) -> int:
        return len(self._queue) + len(self._ended) + sum(1 for s in self._slots if s.launch is not None)

    def bind(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        if not callable(train_fn):
            raise TypeError(f"train_fn must be callable as train_fn(config, reporter), got {train_fn!r}")
        self._connected_here = connect(self.address)
        try:
            self._start(train_fn, on_report)
        except BaseException:
            self.shutdown()  # nothing is left connected or running after a failed start
            raise

    def _start(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        import ray
        from ray import cloudpickle

        self._ray = ray
        try:
            self._train_fn_bytes = cloudpickle.dumps(train_fn)
        except Exception as err:  # noqa: BLE001 -- pickle raises several types
            raise ValueError(f"train_fn {train_fn!r} cannot be pickled for Ray ({type(err).__name__}: {err})") from err
        self._on_report = on_report
        total = ray.cluster_resources()
        self._cluster = {"ray_address": ray.get_runtime_context().gcs_address,
                         "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
                         "cluster_resources": {k: v for k, v in total.items() if not k.startswith("node:")}}
        self._check_feasible(total)
        options: dict[str, Any] = {"num_cpus": self.request["num_cpus"], "num_gpus": self.request["num_gpus"],
                                   "max_restarts": 0, "max_task_retries": 0,
                                   "scheduling_strategy": self.scheduling_strategy}
        if self.request["resources"]:
            options["resources"] = self.request["resources"]
        if "memory" in self.request:
            options["memory"] = self.request["memory"]
        self._actor_class = ray.remote(TrialActor).options(**options)
        self._slots = [self._new_slot(i) for i in range(self.num_workers)]

    def submit(self, launch: TrialLaunch) -> None:
        if self._on_report is None:
            raise RuntimeError("call bind(train_fn, on_report) before submit")
        if self.num_running >= self.capacity:
            raise RuntimeError("no free worker; submit only while num_running < capacity")
        # absolute paths: the actors' working directory is not the driver's
        self._queue.append(dataclasses.replace(launch, checkpoint_dir=os.path.abspath(launch.checkpoint_dir),
                                               fence=None if launch.fence is None else os.path.abspath(launch.fence)))
        self._dispatch()

    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        ray = self._ray
        end = None if timeout is None else time.monotonic() + timeout
        outcomes, self._ended = self._ended, []
        while not outcomes:
            self._dispatch()
            if self._ended:
                outcomes, self._ended = self._ended, []
                break
            waiting = {s.call: s for s in self._slots if s.call is not None}
            waiting.update({s.starting: s for s in self._slots if s.starting is not None})
            if not waiting:
                break
            wait = None if end is None else max(0.0, end - time.monotonic())
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=wait)
            if not ready:
                break
            for ref in ready:
                slot = waiting[ref]
                outcome = self._handle(slot, ref)
                if outcome is not None:
                    outcomes.append(outcome)
            outcomes.extend(self._ended)
            self._ended = []
            if end is not None and time.monotonic() >= end:
                break
        return outcomes

    def cancel(self, trial_id: int) -> bool:
        """Kill a running trial's actor. A launch still waiting for an idle actor has not started, so it cannot be
        hung: before the time limit it waits on (its liveness clock restarted through ``on_started``)."""
        for launch in list(self._queue):
            if launch.trial_id == trial_id:
                if launch.deadline is None or time.time() < launch.deadline:
                    if self.on_started is not None:
                        self.on_started(trial_id)
                    return False
                self._queue.remove(launch)
                self._ended.append(TrialOutcome(trial_id, cancelled=True))
                return True
        for slot in self._slots:
            if slot.launch is not None and slot.launch.trial_id == trial_id:
                slot.cancelled = True
                self._ray.kill(slot.actor, no_restart=True)
                self.num_killed += 1
                return True
        return False

    def resources(self) -> dict:
        return {"num_cpus": self.request["num_cpus"], "num_gpus": self.request["num_gpus"],
                **({"memory": self.request["memory"]} if "memory" in self.request else {}),
                "resources": dict(self.request["resources"]), "scheduling_strategy": self.scheduling_strategy,
                **self._cluster, "actors": list(self.placements)}

    def stats(self) -> dict:
        return {"num_actors_started": self.num_actors_started, "num_retries": self.num_retries,
                "num_actors_killed": self.num_killed, "max_failures": self.max_failures,
                "trial_nodes": {str(k): v for k, v in self.trial_nodes.items()}}

    def shutdown(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 -- already dead or the cluster is gone: nothing left to release
                pass
        self._slots, self._queue = [], []
        if self._connected_here and ray.is_initialized():
            ray.shutdown()
        self._ray = None

    def wait_for_workers(self, count: int | None = None, timeout: float = 60.0) -> int:
        """Wait until ``count`` actors (default all) are placed and started, at most ``timeout`` seconds; returns
        how many are. Trials do not need this (they start on the first actor ready); benchmarks and tests do."""
        count = self.num_workers if count is None else count
        end = time.monotonic() + timeout
        while True:
            started = sum(1 for s in self._slots if s.placement is not None)
            starting = {s.starting: s for s in self._slots if s.starting is not None}
            if started >= count or not starting or time.monotonic() >= end:
                return started
            ready, _ = self._ray.wait(list(starting), num_returns=1, timeout=max(0.0, end - time.monotonic()))
            for ref in ready:
                slot = starting[ref]
                outcome = self._handle(slot, ref)
                if outcome is not None:
                    self._ended.append(outcome)

    # ---- internals ---------------------------------------------------------------------------------------
    def _check_feasible(self, total: dict) -> None:
        wanted = {"CPU": self.request["num_cpus"], "GPU": self.request["num_gpus"], **self.request["resources"]}
        missing = {k: v for k, v in wanted.items() if v > 0 and total.get(k, 0.0) < v}
        if missing:
            raise ValueError(f"the Ray cluster ({self._cluster['ray_address']}) cannot place a trial: it asks for "
                             f"{missing}, the cluster has {({k: total.get(k, 0.0) for k in missing})}; lower "
                             "resources_per_trial or add nodes that have them (`ray start --address=... "
                             "--num-cpus=.. --num-gpus=.. --resources='{\"name\": n}'`)")

    def _new_slot(self, index: int) -> _Slot:
        assert self._actor_class is not None and self._train_fn_bytes is not None
        actor = self._actor_class.remote(self._train_fn_bytes, actor_env(self.request["num_cpus"],
                                                                         self.request["num_gpus"]))
        self.num_actors_started += 1
        return _Slot(index=index, actor=actor, starting=actor.placement.remote())

    def _dispatch(self) -> None:
        """Hand queued launches to started, idle actors."""
        for slot in self._slots:
            if not self._queue:
                return
            if slot.placement is not None and slot.launch is None:
                launch = self._queue.pop(0)
                self._sent[launch.trial_id] = (len(read_reports(launch.checkpoint_dir)), 0, None)
                slot.launch, slot.cancelled = launch, False
                slot.call = slot.actor.run.remote(dataclasses.asdict(launch), LONG_POLL_S)

    def _handle(self, slot: _Slot, ref: Any) -> TrialOutcome | None:
        ray = self._ray
        try:
            value = ray.get(ref)
        except ray.exceptions.RayError as err:
            return self._actor_died(slot, err)
        if ref is slot.starting:
            slot.starting, slot.placement = None, value
            self.placements.append(value)
            return None
        slot.call = None
        assert slot.launch is not None and self._on_report is not None
        decision = None
        for message in value:
            if message[0] == "started":
                self.trial_nodes.setdefault(message[1], []).append(message[2]["node_id"])
                if self.on_started is not None:
                    self.on_started(message[1])
            elif message[0] == "report":
                decision = self._report(message[1], message[2])
            elif message[0] == "done":
                slot.launch = None
                return TrialOutcome(**message[1])
        slot.call = slot.actor.exchange.remote(decision, LONG_POLL_S)
        return None

    def _actor_died(self, slot: _Slot, err: Exception) -> TrialOutcome | None:
        """The actor (or its node) is gone: replace it; retry its trial unless it was cancelled or out of tries."""
        launch, cancelled = slot.launch, slot.cancelled
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 -- it is dead already
            pass
        if launch is None:  # died while starting (or idle): a replacement takes its place, a few times over
            self._start_failures += 1
            if self._start_failures > 2 * self.num_workers + 2:
                raise RuntimeError(f"Ray actors for trials keep dying before they run anything ({self._start_failures} "
                                   f"so far; the last: {type(err).__name__}: {err}); check the cluster's logs "
                                   "(`ray status`, the session's logs folder) and that every node has jaxgluon's "
                                   f"dependencies (`{INSTALL_HINT}`)") from err
            self._slots[slot.index] = self._new_slot(slot.index)
            return None
        self._slots[slot.index] = self._new_slot(slot.index)
        if cancelled:
            return TrialOutcome(launch.trial_id, cancelled=True)
        where = "" if slot.placement is None else f" on node {slot.placement['node_ip']} ({slot.placement['node_id'][:12]})"
        error = f"the Ray actor running trial {launch.trial_id}{where} died: {type(err).__name__}: {err}"
        failures = self._failures[launch.trial_id] = self._failures.get(launch.trial_id, 0) + 1
        if failures > self.max_failures:
            message = f"{error}\n(failed {failures} times, more than max_failures={self.max_failures})"
            return TrialOutcome(launch.trial_id, error=message.splitlines()[0] + f" (max_failures="
                                f"{self.max_failures} reached)", traceback=message)
        if self._deliver_unsent(launch):
            return TrialOutcome(launch.trial_id)  # told PAUSE/STOP by a report it made just before dying
        self.num_retries += 1
        if self.on_retry is not None:
            self.on_retry(launch.trial_id, error, failures)
        self._queue.insert(0, launch)
        return None

    def _deliver_unsent(self, launch: TrialLaunch) -> bool:
        """Deliver the reports the dead launch wrote to its ``reports.jsonl`` but never sent (it died between the
        two); True when one was answered with something other than CONTINUE (the trial is then over, not retried)."""
        assert self._on_report is not None
        base, sent, decision = self._sent[launch.trial_id]
        if decision not in (None, "CONTINUE"):
            return True
        for result in read_reports(launch.checkpoint_dir)[base + sent:]:
            epoch = result.get("epoch")
            if isinstance(epoch, int) and 1 <= epoch <= launch.max_epochs:
                decision = self._report(launch.trial_id, result)
                if decision != "CONTINUE":
                    return True
        return False

    def _report(self, trial_id: int, result: dict) -> str:
        assert self._on_report is not None
        decision = self._on_report(trial_id, result)
        decision = str(getattr(decision, "value", decision))
        base, sent, _ = self._sent[trial_id]
        self._sent[trial_id] = (base, sent + 1, decision)
        return decision
