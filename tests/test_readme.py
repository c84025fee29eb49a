"""Every ```python snippet in README.md runs, so the README cannot drift from the code.

Each block runs in a fresh interpreter (``import jaxgluon as ag`` prepended, as a reader's session would have it),
with ``HOME`` pointing at a folder holding tiny ``~/data/train`` and ``~/data/test`` class folders, and with the
few substitutions below that shrink budgets for CI. Every substitution must still find its text: a README edit that
removes one fails here, so the table is updated with the README rather than silently testing nothing.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = REPO.parent / "shared"

# (block's first line) -> [(text in the README, what the test runs instead)]
SUBSTITUTIONS: dict[str, list[tuple[str, str]]] = {
    "from jaxgluon import ImageClassification as task": [
        ("results = task.fit(dataset, time_limits=600)", "results = task.fit(dataset, time_limits=25)"),
        # offline (CI) the ImageNet nets have no weights: the same search over the CIFAR-10 nets, at a small budget
        ("ag.Nets(['resnet18_v1', 'resnet34_v1', 'resnet50_v1'])", "ag.Nets(['cifar_resnet20_v1', 'cifar_resnet32_v1'])"),
        ("search_strategy='hyperband', time_limits=600, epochs=8)",
         "search_strategy='hyperband', time_limits=25, epochs=2)"),
    ],
    # the same call on a smaller net: offline, resnet50_v1b has no weights and building its random init took 84 s
    # here (load 19) against 3.5 s for cifar_resnet20_v1, which still takes pretrained='auto' with a new 5-class
    # head (from ../shared's weights; without them a random init with the same warning)
    "from jaxgluon.models import get_model, model_info": [
        ('get_model("resnet50_v1b", num_classes=5, pretrained="auto")',
         'get_model("cifar_resnet20_v1", num_classes=5, pretrained="auto")'),
        # two trials of two epochs (not four of three) still search, checkpoint and load the best epoch back
        ('"lr_scheduler": ag.Categorical("cosine", "poly")}, epochs=3,',
         '"lr_scheduler": ag.Categorical("cosine", "poly")}, epochs=2,'),
        ("num_trials=4)", "num_trials=2)"),
    ],
    # the cluster of the README is this machine's own Ray instance, its storage a local folder
    "import jaxgluon as ag   # with ray installed: pip install 'jaxgluon[ray]'": [
        ("ray_address='auto'", "ray_address='local'"),
        ("storage_path='/mnt/shared/runs'", "storage_path='runs'"),
    ],
}
# (text that marks a block) -> checks run after it, in the same interpreter: the snippet does what the README says
CHECKS: dict[str, str] = {
    "executor='ray'": """
assert result.metadata['executor'] == 'ray'
assert result.metadata['resources_per_trial']['num_cpus'] == 1
assert len(result.trials) == 6 and all(t['status'] != 'ERROR' for t in result.trials), result.trials
""",
    "ensemble=True, refit='auto'": """
import numpy as np
assert results.metadata['final_model'] in ('ensemble', 'refit', 'single', 'linear_probe', 'pixel_kernel'), \
    results.metadata
assert 'ensemble' in results.metadata and 'refit' in results.metadata   # what was tried, and why not
assert {r['model'] for r in results.leaderboard_rows()} <= {'trial', 'ensemble', 'refit', 'pixel_kernel'}
images = np.full((2, 16, 16, 3), 90, np.uint8)
np.testing.assert_array_equal(task.load('model').predict_proba(images), results.predict_proba(images))
""",
    "ag.tune(PopulationTrial(spec)": """
assert result.metadata['executor'] == 'population', result.metadata['executor']
assert result.metadata['resources_per_trial']['population_size'] == 2
assert [t['status'] for t in result.trials] == ['COMPLETED'] * 3, result.trials
assert all(r['population_size'] == 2 for t in result.trials for r in t['results'])
""",
    "search_strategy='pbt'": """
import pathlib
lineage = results.metadata['scheduler']['lineage']
assert lineage and results.metadata['executor'] == 'population'
assert pathlib.Path('pbt.png').stat().st_size > 0
exploited = {e['trial_id'] for e in lineage}
for trial in results.trials:
    if trial['trial_id'] in exploited:   # its report after the copy names the source (an in-memory gather)
        assert any('pbt_source' in r for r in trial['results']), trial
assert 0.0 <= results.reward <= 1.0
""",
}
NEEDS_SHARED = ("LCBench(",)   # blocks that read ../shared (skipped, with the reason, when it is absent)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block."""
    return [(text[:m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def _write_folder(root: pathlib.Path, n: int, seed: int) -> None:
    from PIL import Image
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("ants", "bees")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(1, n + 1):
            base = np.full((16, 16, 3), 60 + 120 * label, np.uint8)
            noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(folder / f"{i}.jpg")


@pytest.fixture(scope="module")
def reader_home(tmp_path_factory) -> pathlib.Path:
    home = tmp_path_factory.mktemp("home")
    _write_folder(home / "data" / "train", 16, seed=0)
    _write_folder(home / "data" / "test", 6, seed=1)
    return home


def test_readme_has_snippets_and_every_substitution_applies():
    assert len(BLOCKS) >= 4
    firsts = [code.splitlines()[0] for _, code in BLOCKS]
    for first, subs in SUBSTITUTIONS.items():
        code = BLOCKS[firsts.index(first)][1]
        for old, _new in subs:
            assert old in code, f"README no longer contains {old!r}: update SUBSTITUTIONS in {__file__}"
    for marker in CHECKS:
        assert sum(marker in code for _, code in BLOCKS) == 1, f"no single README block has {marker!r}: update CHECKS"


@pytest.mark.slow
@pytest.mark.parametrize("line,code", [   # a fit within time_limits runs alone under xdist (tests/conftest.py)
    pytest.param(line, code, marks=[pytest.mark.alone] if "time_limits=" in code else [], id=f"README.md:{line}")
    for line, code in BLOCKS])
def test_readme_snippet_runs(line, code, reader_home, tmp_path):
    if any(marker in code for marker in NEEDS_SHARED) and not SHARED.is_dir():
        pytest.skip(f"the snippet at README.md:{line} reads ../shared, which is absent")
    for old, new in SUBSTITUTIONS.get(code.splitlines()[0], []):
        code = code.replace(old, new)
    code += "".join(check for marker, check in CHECKS.items() if marker in code)
    env = dict(os.environ, HOME=str(reader_home), PYTHONPATH=str(REPO), MPLBACKEND="Agg",
               JAXGLUON_HOME=os.environ.get("JAXGLUON_HOME") or str(pathlib.Path.home() / ".jaxgluon"))
    if SHARED.is_dir():
        env.setdefault("JAXGLUON_WEIGHTS_PATH", str(SHARED / "weights" / "cifar10_resnet"))
    proc = subprocess.run([sys.executable, "-c", "import jaxgluon as ag\n" + code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, f"README.md:{line} failed:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
