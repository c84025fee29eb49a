"""What the benchmarks share, in one module (never imported from one benchmark into another).

Every benchmark starts with ``import _common`` (its own folder is first on ``sys.path`` when it runs as
``python benchmarks/<name>.py``, from any working directory). Importing it puts this checkout first on
``sys.path``, so the benchmark measures the ``jaxgluon`` beside it rather than whichever one is installed.

- LCBench budget units (``multifidelity.py``, ``hyperband_defaults.py``, ``gp_lcbench_ablation.py``):
  :func:`random_config_curves`, :func:`median_full_trial_time`; the held-out task rule, its options and budget
  (:data:`BENCHMARK_TASKS`, :data:`FRACTIONS`, :func:`add_held_out_arguments`, :func:`chosen_tasks`,
  :func:`budget_and_median_random`).
- Train-step peers (``train_step.py``, ``gpu_train_step.py``): :func:`torch_resnet`,
  :func:`torch_efficientnet_lite0`, :func:`jax_step_fn`.
- :func:`load_pbt_toy`: the PBT paper's toy problem, which ``tests/scheduler`` owns (``pbt.py``).
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import time
import types

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path[:2]:
    sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------- LCBench budgets and tasks
def random_config_curves(blackbox, n: int = 256, key: int = 12345) -> list:
    """Learning curves of ``n`` random configs, drawn with a fixed key (the default: the sample the budget unit
    comes from)."""
    import jax

    from jaxgluon.space import compile_space

    return blackbox.curves(compile_space(blackbox.search_space).sample_batch(jax.random.key(key), n))


def median_full_trial_time(blackbox, n: int = 256, curves: list | None = None) -> float:
    """Median simulated time of a full (max_epochs) training run over random configs: the budget unit
    (``curves``: those of :func:`random_config_curves`, when the caller has them already)."""
    curves = random_config_curves(blackbox, n) if curves is None else curves
    return float(np.median([c.elapsed[-1] for c in curves]))


BENCHMARK_TASKS = ("3945", "7593", "126026", "189906")
FRACTIONS = (0.25, 0.5, 1.0)


def held_out_tasks(num: int, path: str | None = None) -> list[str]:
    from jaxgluon.tune.sim import LCBench

    return [t for t in LCBench.tasks(path) if t not in BENCHMARK_TASKS][:num]


def add_held_out_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a selection on held-out LCBench tasks: which tasks, seeds, simulated workers and budget."""
    parser.add_argument("--num-tasks", type=int, default=6)
    parser.add_argument("--tasks", default=None,
                        help="comma-separated LCBench task ids instead of the held-out rule (a second check; "
                             "never the multifidelity benchmark's tasks)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=40.0, help="full-trial times (as multifidelity.py)")
    parser.add_argument("--lcbench", default=None)


def chosen_tasks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The held-out tasks by the fixed rule, or ``--tasks`` (never the benchmark's own)."""
    if not args.tasks:
        return held_out_tasks(args.num_tasks, args.lcbench)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if set(tasks) & set(BENCHMARK_TASKS):
        parser.error(f"--tasks must not include the benchmark's tasks {BENCHMARK_TASKS}")
    return tasks


def budget_and_median_random(bb, args: argparse.Namespace) -> tuple[float, float]:
    """A task's simulated budget (``--budget`` full-trial times / ``--workers``) and the median final accuracy of
    random configs, both from the one sample of :func:`random_config_curves`."""
    curves = random_config_curves(bb)
    budget = args.budget * median_full_trial_time(bb, curves=curves) / args.workers
    return budget, float(np.median([c.rewards[-1] for c in curves]))


# ------------------------------------------------------------------------------------------ train steps
def torch_resnet(arch: str, num_classes: int = 1000):
    """torchvision's ResNet-18/50 (stride on the 3x3 conv: v1b), written out since torchvision isn't installed."""
    import torch
    from torch import nn

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, cin: int, planes: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.down = _downsample(cin, planes, stride)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, cin: int, planes: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.down = _downsample(cin, planes * 4, stride)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    def _downsample(cin: int, cout: int, stride: int):
        if stride == 1 and cin == cout:
            return None
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    block, layers = (Basic, (2, 2, 2, 2)) if arch == "resnet18" else (Bottleneck, (3, 4, 6, 3))
    stages, cin = [], 64
    for i, n in enumerate(layers):
        planes = 64 * 2 ** i
        for j in range(n):
            stages.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1))
            cin = planes * block.expansion
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1), *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(cin, num_classes))


def torch_efficientnet_lite0(num_classes: int = 1000):
    """EfficientNet-Lite0 in torch (ReLU6, no squeeze-excitation; jaxgluon.models.efficientnet_lite's stages), for
    the CPU train-step peer. Symmetric padding k//2 (torch's), where the jax net pads TF-style: same FLOPs."""
    from torch import nn

    from jaxgluon.models.efficientnet_lite import lite_stages

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
        return layers + [nn.ReLU6()] if act else layers

    class MBConv(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
            super().__init__()
            hidden = cin * expand
            self.body = nn.Sequential(*(conv_bn(cin, hidden, 1) if expand != 1 else []),
                                      *conv_bn(hidden, hidden, k, stride, groups=hidden),
                                      *conv_bn(hidden, cout, 1, act=False))
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            return self.body(x) + x if self.skip else self.body(x)

    blocks = [MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1, expand)
              for k, repeats, cin, cout, expand, stride in lite_stages(0) for i in range(repeats)]
    return nn.Sequential(*conv_bn(3, 32, 3, 2), *blocks, *conv_bn(320, 1280, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(1280, num_classes))


def jax_model_name(arch: str) -> str:
    """The registry name of a train-step benchmark's ``--arch`` (resnet18 -> resnet18_v1b)."""
    return arch if arch.startswith("efficientnet") else f"{arch}_v1b"


def jax_step_fn(arch: str, size: int, batch: int, dtype=None):
    """:func:`registry_step_fn` for a train-step benchmark's ``--arch`` with 1000 classes."""
    return registry_step_fn(jax_model_name(arch), 1000, size, batch, dtype)


def registry_step_fn(name: str, num_classes: int, size: int, batch: int, dtype=None):
    """(step closure, compile seconds, first-step seconds, FLOPs per step from XLA's cost analysis) for
    jaxgluon.train's jitted data-parallel train_step of the registry's ``name`` (random init, SGD with momentum) on
    one fixed random batch; ``dtype`` is the compute dtype (float32 master weights). The first step has run."""
    import jax
    import optax

    from jaxgluon.models import get_model
    from jaxgluon.train import compile_steps, create_train_state, make_mesh

    t0 = time.perf_counter()
    model = get_model(name, num_classes=num_classes, pretrained=False, dtype=dtype)
    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(model, optax.sgd(0.01, momentum=0.9)))
    rng = np.random.default_rng(0)
    data = steps.shard({"image": rng.standard_normal((batch, size, size, 3), np.float32),
                        "label": rng.integers(0, num_classes, batch).astype(np.int32)})
    t1 = time.perf_counter()
    compiled = steps.train_step.lower(state, data).compile()
    compile_s = time.perf_counter() - t1
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    first_step_s = time.perf_counter() - t0
    holder = [state]

    def step() -> None:
        holder[0], m = compiled(holder[0], data)
        jax.block_until_ready(m)
    return step, compile_s, first_step_s, flops


def median_step_seconds(train_step, state, data, n: int):
    """``(median seconds of one blocked ``train_step(state, data)``, the state after)``: one untimed call first (a
    compile or a cache load), then ``n`` timed ones, each threading the (donated) state on."""
    import jax

    state, metrics = train_step(state, data)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        state, metrics = train_step(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), state


# ------------------------------------------------------------------------------------------- PBT toy
def load_pbt_toy() -> types.ModuleType:
    """``tests/scheduler/pbt_toy.py`` (the PBT paper's toy problem, which the scheduler tests own), loaded from its
    file without putting ``tests/`` on ``sys.path``."""
    path = ROOT / "tests" / "scheduler" / "pbt_toy.py"
    spec = importlib.util.spec_from_file_location("pbt_toy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
