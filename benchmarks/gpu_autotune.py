"""XLA's GPU autotuning level: compile time against step time for one network (what a cold trial pays vs gains).

    python benchmarks/gpu_autotune.py --data FOLDER --levels 0,1,4 --timeout 60      # on a GPU

For each level, a fresh process (``XLA_FLAGS=--xla_gpu_autotune_level=L``, empty persistent cache) builds the net
(bf16 compute, ``--net`` efficientnet_lite0 at 224 px, batch 64), compiles its train step (timed), then times
the step alone on one batch already on the device (median of 20) and a training loop over the real cached train
loader for 3 epochs (the loader's batches and the step together). A level whose process passes ``--timeout``
seconds is reported as such. The peer is the other levels in the same run; XLA's default level is 4. The output
ends with one JSON line (``jaxgluon.train.compile_cache.GPU_AUTOTUNE_LEVEL`` is chosen from it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _common import median_step_seconds  # first: puts this checkout's jaxgluon first on sys.path


def child(args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxgluon.data as jdata
    from jaxgluon import models
    from jaxgluon.train.optim import TrialConfig, optimizer_from_trial
    from jaxgluon.train.state import create_train_state
    from jaxgluon.train.steps import compile_steps, make_mesh
    from jaxgluon.train.trial import TrialSpec
    from jaxgluon.train.warm_start import abstract_batch, abstract_state
    from jax.sharding import NamedSharding, PartitionSpec

    train_src, _ = TrialSpec(train_data=args.data).sources()
    info = models.model_info(args.net)
    mesh = make_mesh()
    steps = compile_steps(mesh)
    trial = TrialConfig.from_dict({"net": args.net, "optimizer": {"name": "sgd", "learning_rate": 0.01}})
    dtype = jnp.bfloat16 if jax.default_backend() != "cpu" else jnp.float32
    model = models.get_model(args.net, len(train_src.class_names), pretrained=False, dtype=dtype)
    host_state = create_train_state(model, optimizer_from_trial(trial, 100, 10))
    split = NamedSharding(mesh, PartitionSpec("data"))
    start = time.perf_counter()
    steps.train_step.lower(abstract_state(host_state, NamedSharding(mesh, PartitionSpec())),
                           abstract_batch(args.batch, args.image_size, split)).compile()
    compile_s = time.perf_counter() - start
    state = steps.replicate(host_state)
    loader = jdata.make_train_loader(train_src, batch_size=args.batch, image_size=args.image_size, mean=info["mean"],
                                     std=info["std"], num_epochs=4)
    batches = iter(loader)
    first = None
    for _ in range(loader.steps_per_epoch):   # epoch 1: decodes into the cache
        first = next(batches)
    step_s, state = median_step_seconds(steps.train_step, state, steps.shard(first), 20)
    t, n = time.perf_counter(), 0
    for _ in range(3 * loader.steps_per_epoch):   # epochs 2-4: loader + step, as a trial's loop runs them
        batch = next(batches)
        state, m = steps.train_step(state, steps.shard(batch))
        n += len(batch["label"])
    jax.block_until_ready(m)
    loop_img_s = n / (time.perf_counter() - t)
    return {"compile_s": round(compile_s, 2), "step_ms": round(1000 * step_s, 2),
            "step_img_s": round(args.batch / step_s, 1), "loop_img_s": round(loop_img_s, 1)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a class-per-subfolder training folder")
    p.add_argument("--net", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--levels", default="0,1,4")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per level's process")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return {}
    figures: dict = {"net": args.net, "image_size": args.image_size, "batch": args.batch}
    for level in [int(x) for x in args.levels.split(",")]:
        env = dict(os.environ, JAXGLUON_HOME=tempfile.mkdtemp(prefix="autotune_home_"),
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_autotune_level={level}".strip())
        cmd = [sys.executable, os.path.abspath(__file__), "--child", *(argv if argv is not None else sys.argv[1:])]
        start = time.perf_counter()
        try:
            out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
            row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
                "error": f"exit {out.returncode}"}
        except subprocess.TimeoutExpired:
            row = {"error": f"not done in {args.timeout:.0f} s (process start, build, compile, timing)"}
        row["process_s"] = round(time.perf_counter() - start, 1)
        figures[f"level_{level}"] = row
        print(f"autotune level {level}: {row}", flush=True)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
