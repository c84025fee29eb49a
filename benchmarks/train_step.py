"""Train-step throughput: jaxgluon ResNet-18/50 (jitted SGD step) vs the same network in torch eager on the CPU.

Per case (arch x image size, batch 32) it reports the jaxgluon step's compile time and first-step latency, then
images/s of jaxgluon, torch eager (NCHW) and torch eager channels-last measured in interleaved windows (each round
times one window of each, in rotating order, so that load from other processes hits all three alike); the
figure is the median window. torch is an optional benchmark dependency (``pip install torch``; no torchvision:
the torch ResNets are defined here, torchvision's v1 layout = GluonCV's v1b).

    python benchmarks/train_step.py --arch resnet18 --size 64          # one case
    python benchmarks/train_step.py --arch all --size all --rounds 3    # the RESULTS.md table
    JAXGLUON_ONEDNN=0 python benchmarks/train_step.py ...              # XLA's convolutions instead of oneDNN's

The output ends with one JSON line: per case the images/s of each and the ratio jaxgluon / torch eager.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np
import optax

from jaxgluon.models import get_model, onednn
from jaxgluon.train import compile_steps, create_train_state, enable_compilation_cache, make_mesh

ARCHS = ("resnet18", "resnet50")
SIZES = (32, 64, 128, 224)


# ---------------------------------------------------------------------------------------------- torch peer
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


def torch_step_fn(arch: str, size: int, batch: int, channels_last: bool):
    """A closure running one torch eager SGD step (train-mode BatchNorm) on a fixed random batch."""
    import torch
    torch.manual_seed(0)
    model = torch_resnet(arch).train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


# ------------------------------------------------------------------------------------------ jaxgluon side
def jax_step_fn(arch: str, size: int, batch: int, dtype=None):
    """(step closure, compile seconds, first-step seconds, FLOPs per step from XLA's cost analysis) for
    jaxgluon.train's jitted data-parallel train_step; ``dtype`` is the compute dtype (float32 master weights)."""
    t0 = time.perf_counter()
    model = get_model(f"{arch}_v1b", num_classes=1000, pretrained=False, dtype=dtype)
    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(model, optax.sgd(0.01, momentum=0.9)))
    rng = np.random.default_rng(0)
    data = steps.shard({"image": rng.standard_normal((batch, size, size, 3), np.float32),
                        "label": rng.integers(0, 1000, batch).astype(np.int32)})
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


# ------------------------------------------------------------------------------------------------ timing
def interleaved_images_per_s(fns: dict, batch: int, rounds: int, window_s: float,
                             min_steps: int = 3) -> dict[str, float]:
    """Median images/s per contender over ``rounds`` rounds of one timed window each, in rotating order.

    A window is ``window_s`` long but at least ``min_steps`` steps: with one step per window (ResNet-50 at 128 px
    takes ~2 s a step), the first step after another contender's window, slowed by its cache and thread state,
    was the whole figure (ResNet-50 128 px ratio 0.73-0.88 with 1-step windows, 0.96-1.10 with 3-step ones).
    """
    per_step = {}
    for name, fn in fns.items():  # warm up (two steps) and estimate the step time to size the windows
        fn()
        t = time.perf_counter()
        fn()
        per_step[name] = time.perf_counter() - t
    steps = {name: max(min_steps, round(window_s / s)) for name, s in per_step.items()}
    rates: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            for _ in range(steps[name]):
                fns[name]()
            rates[name].append(batch * steps[name] / (time.perf_counter() - t))
    return {name: statistics.median(v) for name, v in rates.items()}


def run_case(arch: str, size: int, batch: int, rounds: int, window_s: float, torch_peer: bool) -> dict:
    jax_fn, compile_s, first_step_s, _ = jax_step_fn(arch, size, batch)
    fns = {"jaxgluon": jax_fn}
    if torch_peer:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        fns["torch"] = torch_step_fn(arch, size, batch, channels_last=False)
        fns["torch_cl"] = torch_step_fn(arch, size, batch, channels_last=True)
    rates = interleaved_images_per_s(fns, batch, rounds, window_s)
    case = {"arch": arch, "size": size, "batch": batch, "compile_s": round(compile_s, 2),
            "first_step_s": round(first_step_s, 2), "jaxgluon_img_s": round(rates["jaxgluon"], 2)}
    if torch_peer:
        case.update(torch_img_s=round(rates["torch"], 2), torch_cl_img_s=round(rates["torch_cl"], 2),
                    ratio_vs_torch=round(rates["jaxgluon"] / rates["torch"], 3),
                    ratio_vs_torch_cl=round(rates["jaxgluon"] / rates["torch_cl"], 3))
    return case


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18", choices=ARCHS + ("all",))
    p.add_argument("--size", default="64", help="image size in px, or 'all' for " + "/".join(map(str, SIZES)))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="timed windows per contender (median reported)")
    p.add_argument("--window-s", type=float, default=2.0, help="approximate length of one timed window")
    p.add_argument("--no-torch", action="store_true", help="time jaxgluon only")
    p.add_argument("--compile-cache", default=None, help="persistent compilation cache dir (first-step latency "
                                                         "of a second run shows the cached compile)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or args.window_s <= 0:
        raise ValueError("--batch and --rounds must be >= 1 and --window-s > 0")
    sizes = SIZES if args.size == "all" else (int(args.size),)
    archs = ARCHS if args.arch == "all" else (args.arch,)
    if args.compile_cache:
        enable_compilation_cache(args.compile_cache)
    conv = "onednn" if jax.default_backend() == "cpu" and onednn.supports((1, 1, 1, 1), np.float32) else "xla"
    print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.device_count()} "
          f"cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f} large_convs={conv}", flush=True)
    cases = []
    for arch in archs:
        for size in sizes:
            case = run_case(arch, size, args.batch, args.rounds, args.window_s, not args.no_torch)
            cases.append(case)
            print(" ".join(f"{k}={v}" for k, v in case.items()), flush=True)
    summary = dict(cases[0]) if len(cases) == 1 else {"cases": cases}
    if not args.no_torch and len(cases) > 1:
        summary["min_ratio_vs_torch"] = min(c["ratio_vs_torch"] for c in cases)
    summary["large_convs"] = conv
    summary["loadavg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
