"""Compile once per shape: in one process the first trial of a (net, image size, batch, dtype, mesh) compiles a
handful of programs, and every later trial of that shape -- whatever its optimizer, schedule, label smoothing or
BatchNorm freezing -- compiles and traces nothing."""
from __future__ import annotations


import jax
import pytest

from jaxgluon.models.registry import INITIALIZERS
from jaxgluon.train import TrialSpec, train_trial
from jaxgluon.train.compile_count import CompileCounter
from jaxgluon.train.caches import PROCESS_CACHES, TrialCaches
from jaxgluon.train.steps import PROGRAMS

from tests.conftest import SHARED
from tests.recording_reporter import RecordingReporter


CONFIGS = [
    {"net": "cifar_resnet20_v1", "optimizer": {"name": "sgd", "learning_rate": 0.01}, "lr_scheduler": "cosine"},
    {"net": "cifar_resnet20_v1", "optimizer": {"name": "adam", "learning_rate": 1e-3, "wd": 1e-4},
     "lr_scheduler": "poly", "label_smoothing": 0.1, "warmup_epochs": 0.5},
    {"net": "cifar_resnet20_v1", "optimizer": {"name": "adamw", "learning_rate": 3e-4}, "lr_scheduler": "step"},
]


@pytest.mark.parametrize("freeze", [False, True])
def test_later_trials_compile_nothing(tmp_path, monkeypatch, freeze):
    weights = SHARED / "weights" / "cifar10_resnet"
    if weights.is_dir():   # pretrained: the linear probe's feature extractor and head fit are counted too
        monkeypatch.setenv("JAXGLUON_WEIGHTS_PATH", str(weights))
    spec = TrialSpec(train_data="digits:train", image_size=16, batch_size=32, compilation_cache=False,
                     freeze_batchnorm=freeze, pretrained="auto" if weights.is_dir() else False)
    jax.clear_caches()            # a fresh process, as far as compiled programs go
    PROGRAMS.clear()
    INITIALIZERS.clear()
    PROCESS_CACHES.clear()
    caches = TrialCaches()        # what fit makes per call and hands every trial
    runs = []
    for i, config in enumerate(CONFIGS if not freeze else CONFIGS[:2]):   # keep the suite short
        reporter = RecordingReporter(tmp_path / str(i), trial_id=i, seed=i)
        with CompileCounter() as counter:
            train_trial(config, reporter, spec, caches)
        runs.append((reporter.results[0], counter))
    first, first_counter = runs[0]
    assert first["compilations"] == first_counter.compilations <= 10, first_counter.programs
    assert {"jit(train_step)", "jit(eval_predict_step)"} <= set(first_counter.programs)
    for result, counter in runs[1:]:
        assert result["compilations"] == 0 and result["compile_seconds"] == 0.0, counter.programs
        assert counter.compilations == 0 and counter.traces == 0, (counter.programs, counter.traced)
        assert 0.0 <= result["reward"] <= 1.0
    train_src, val_src = spec.sources(caches)      # opened once, by the first trial, and decoded once
    assert len(caches.sources) == 1 and len(PROCESS_CACHES.sources) == 0
    assert set(caches.decoded.for_source(train_src)) == {(True, 16)} | ({(False, 16)} if weights.is_dir() else set())
    assert set(caches.decoded.for_source(val_src)) == {(False, 16)}
    assert not PROCESS_CACHES.decoded.for_source(train_src)      # nothing went to the process-level owner
