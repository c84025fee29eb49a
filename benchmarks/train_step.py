"""Train-step throughput: jaxgluon ResNet-18/50 and EfficientNet-Lite0 (jitted SGD step) vs the same network in
torch eager on the CPU.

Per case (arch x image size, batch 32) it reports the jaxgluon step's compile time and first-step latency, then
images/s of jaxgluon, torch eager (NCHW) and torch eager channels-last measured in interleaved windows (each round
times one window of each, in rotating order, so that load from other processes hits all three alike); the
figure is the median window. torch is an optional benchmark dependency (``pip install torch``; no torchvision:
the torch nets are defined in ``_common``, torchvision's ResNet v1 layout = GluonCV's v1b).

    python benchmarks/train_step.py --arch resnet18 --size 64          # one case
    python benchmarks/train_step.py --arch efficientnet_lite0 --size 160   # the default CPU fine-tuning net
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

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import jax_step_fn, torch_efficientnet_lite0, torch_resnet
from jaxgluon.models import onednn
from jaxgluon.train import enable_compilation_cache

ARCHS = ("resnet18", "resnet50", "efficientnet_lite0")
SIZES = (32, 64, 128, 224)


def torch_step_fn(arch: str, size: int, batch: int, channels_last: bool):
    """A closure running one torch eager SGD step (train-mode BatchNorm) on a fixed random batch."""
    import torch
    torch.manual_seed(0)
    model = (torch_efficientnet_lite0() if arch == "efficientnet_lite0" else torch_resnet(arch)).train()
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
