"""Accelerator train-step throughput: jaxgluon ResNet-50 (bfloat16 compute, float32 master weights, 224 px) vs
torchvision's ResNet-50 with autocast bf16 + channels-last, eager and under ``torch.compile``, side by side on the
same GPU, plus model-FLOPs utilisation.

    python benchmarks/gpu_train_step.py            # on a GPU: ResNet-50, 224 px, batch 256, all local GPUs
    python benchmarks/gpu_train_step.py            # on a CPU: a quick run (ResNet-18, 64 px, batch 16, 3 steps)

The jaxgluon step is ``_common.jax_step_fn`` (``jaxgluon.train.compile_steps``: data-parallel over every local
device, state donated, SGD momentum) on a synthetic batch placed on the devices once, so the figure is the step itself (the input
pipeline is measured elsewhere). FLOPs per step come from the model's own layer shapes
(``jaxgluon.models.flops.model_flops``: convolutions and the classifier, forward and backward), not from XLA's
cost analysis, which on a GPU counts cuDNN convolutions (custom calls) as zero -- it is printed beside it only
for reference. MFU divides the achieved FLOP/s by the devices' dense bf16 peak (``PEAK_BF16_TFLOPS``, vendor
figures; unknown devices and CPUs: no MFU). The torch peers use torchvision's ResNet when it is installed, else
the same network written out in ``_common.torch_resnet``; ``torch.compile`` (default mode) is timed after its
compilation, which is reported separately.
The issue's target is >= 5,000 img/s on one H100 (NVIDIA's tuned PyTorch: ~2,500 img/s on an A100 with AMP).
The output ends with one JSON line of the key figures.

On the lent GPU machine (its image has JAX, flax, optax, orbax and torch/torchvision, not grain): carry grain's
wheel as the device tool's README says, then ``PYTHONPATH=. python3 benchmarks/gpu_train_step.py``.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import jax_model_name, jax_step_fn, torch_resnet

from jaxgluon.models.flops import model_flops
from jaxgluon.models.registry import abstract_model

#: Dense bf16 tensor-core peak per device, TFLOP/s (vendor data sheets, SXM parts).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "B200": 2250.0}


def peak_flops(device: jax.Device) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, tflops in PEAK_BF16_TFLOPS.items():
        if name in kind:
            return tflops * 1e12
    return None


def time_steps(step, n: int) -> float:
    """Seconds per call of ``step`` (which blocks on its own result), median of ``n`` after it has run once."""
    step()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def jaxgluon_case(arch: str, size: int, batch: int, steps: int, bf16: bool) -> dict:
    step, compile_s, _, xla_flops = jax_step_fn(arch, size, batch, dtype=jnp.bfloat16 if bf16 else jnp.float32)
    seconds = time_steps(step, steps)
    devices = jax.local_device_count()
    peak = peak_flops(jax.devices()[0])
    flops = model_flops(abstract_model(jax_model_name(arch), 1000), (batch, size, size, 3)).train_step
    achieved = flops / seconds
    return {"img_s": batch / seconds, "compile_s": compile_s, "flops_per_step": flops,
            "xla_cost_analysis_flops": xla_flops, "gflop_per_image": flops / batch / 1e9,
            "tflops": None if achieved is None else achieved / 1e12,
            "mfu": None if (achieved is None or peak is None) else achieved / (peak * devices),
            "devices": devices, "device_kind": jax.devices()[0].device_kind}


def torch_case(arch: str, size: int, batch: int, steps: int, bf16: bool, compiled: bool = False) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    try:
        import torchvision
        net = getattr(torchvision.models, arch)(num_classes=1000)
        source = f"torchvision {torchvision.__version__}"
    except (ImportError, RuntimeError):   # RuntimeError: a torchvision built for another torch
        net, source = torch_resnet(arch), "_common.torch_resnet (torchvision not installed)"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = net.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    forward = torch.compile(net) if compiled else net
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    step()                               # torch.compile compiles here (and eager warms up)
    warmup_s = time.perf_counter() - start
    return {"img_s": batch / time_steps(step, steps), "device": device, "torch": torch.__version__,
            "net": source, "first_step_s": warmup_s}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    accelerator = jax.default_backend() in ("gpu", "tpu")
    p.add_argument("--arch", default="resnet50" if accelerator else "resnet18", choices=["resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=224 if accelerator else 64)
    p.add_argument("--batch", type=int, default=256 if accelerator else 16,
                   help="global batch (split over the devices)")
    p.add_argument("--steps", type=int, default=20 if accelerator else 3, help="timed steps (median reported)")
    p.add_argument("--fp32", action="store_true", help="float32 compute instead of bfloat16")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-torch-compile", action="store_true")
    args = p.parse_args(argv)
    bf16 = not args.fp32 and accelerator
    print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.devices()}", flush=True)
    ours = jaxgluon_case(args.arch, args.size, args.batch, args.steps, bf16)
    print("jaxgluon: " + " ".join(f"{k}={v}" for k, v in ours.items()), flush=True)
    peer = None if args.no_torch else torch_case(args.arch, args.size, args.batch, args.steps, bf16)
    print("torch eager: " + ("not installed (pip install torch torchvision)" if peer is None else
                             " ".join(f"{k}={v}" for k, v in peer.items())), flush=True)
    compiled = None
    if not (args.no_torch or args.no_torch_compile):
        try:
            compiled = torch_case(args.arch, args.size, args.batch, args.steps, bf16, compiled=True)
        except Exception as exc:  # noqa: BLE001 -- inductor needs a C++ compiler (CPU) or triton (GPU)
            print(f"torch.compile: failed ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
        else:
            print("torch.compile: " + " ".join(f"{k}={v}" for k, v in (compiled or {}).items()), flush=True)
    figures = {"arch": args.arch, "size": args.size, "batch": args.batch, "bf16": bf16,
               "jaxgluon_img_s": round(ours["img_s"], 2), "compile_s": round(ours["compile_s"], 2),
               "mfu": None if ours["mfu"] is None else round(ours["mfu"], 4), "device_kind": ours["device_kind"],
               "devices": ours["devices"], "torch_img_s": None if peer is None else round(peer["img_s"], 2),
               "ratio_vs_torch": None if peer is None else round(ours["img_s"] / peer["img_s"], 3),
               "torch_compile_img_s": None if compiled is None else round(compiled["img_s"], 2),
               "torch_compile_first_step_s": None if compiled is None else round(compiled["first_step_s"], 2),
               "ratio_vs_torch_compile": None if compiled is None else round(ours["img_s"] / compiled["img_s"], 3),
               "gflop_per_image": round(ours["gflop_per_image"], 3), "tflops": round(ours["tflops"], 3),
               "xla_cost_analysis_gflop_per_image": round(ours["xla_cost_analysis_flops"] / args.batch / 1e9, 3),
               "target_5000_img_s_met": ours["img_s"] >= 5000 if jax.default_backend() == "gpu" else None}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
