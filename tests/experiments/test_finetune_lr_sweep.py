"""experiments/finetune_lr_sweep.py: one trial per optimizer config, each epoch's validation figures."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
from PIL import Image

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "finetune_lr_sweep.py"


def _load():
    spec = importlib.util.spec_from_file_location("finetune_lr_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_reports_every_epoch_of_every_config(tmp_path):
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (tmp_path / name).mkdir()
        for i in range(24):
            img = np.clip(60 + 130 * label + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    configs = [{"name": "sgd", "learning_rate": 0.05}, {"name": "adam", "learning_rate": 3e-3, "warmup_epochs": 0.5}]
    rows = _load().sweep(str(tmp_path), "cifar_resnet20_v1", 16, 2, configs, pretrained=False, batch_size=8)
    assert [r["optimizer"]["name"] for r in rows] == ["sgd", "adam"]
    assert [r["warmup_epochs"] for r in rows] == [0.0, 0.5]
    for row in rows:
        assert [e["epoch"] for e in row["epochs"]] == [1, 2]
        assert all(0.0 <= e["val_top1"] <= 1.0 and e["val_log_loss"] > 0 for e in row["epochs"])
        assert row["probe_val_top1"] is None     # random init: no linear probe
