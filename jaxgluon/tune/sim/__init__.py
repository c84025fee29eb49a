"""Simulated tuning: replay schedulers and searchers against tabulated/surrogate benchmarks in seconds.

    >>> from jaxgluon.scheduler import get_scheduler
    >>> from jaxgluon.tune.sim import SyntheticCurves, simulate
    >>> bb = SyntheticCurves(max_epochs=27)
    >>> result = simulate(get_scheduler('hyperband', bb.search_space, max_t=27), bb, num_workers=4, max_time=500.0)
    >>> times, best = result.trajectory()

``simulate`` drives the same ``Runner`` as ``tune()`` with a :class:`SimulatedExecutor` (a simulated clock and
workers); nothing here repeats the runner's loop.
"""
from jaxgluon.tune.sim.blackbox import Blackbox, Curve, monotone_elapsed
from jaxgluon.tune.sim.executor import SimulatedExecutor
from jaxgluon.tune.sim.lcbench import LCBench
from jaxgluon.tune.sim.simulator import SimulationResult, simulate, trajectory_on_grid
from jaxgluon.tune.sim.synthetic import SyntheticCurves

__all__ = ["Blackbox", "Curve", "LCBench", "SimulatedExecutor", "SimulationResult", "SyntheticCurves",
           "monotone_elapsed", "simulate", "trajectory_on_grid"]
