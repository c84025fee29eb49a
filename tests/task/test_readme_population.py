"""The README's population-trials and PBT snippets run as written (digits at 8 px) and do what they say."""
from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _snippets() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Population trials and Population Based Training"):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)        # the snippets write ./runs and pbt.png
    return tmp_path


def test_readme_has_both_snippets():
    assert len(_snippets()) == 2


def test_population_snippet(in_tmp):
    namespace: dict = {}
    exec(compile(_snippets()[0], "README population snippet", "exec"), namespace)
    result = namespace["result"]
    assert result.metadata["executor"] == "population"
    assert result.metadata["resources_per_trial"]["population_size"] == 2
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 3
    assert all(r["population_size"] == 2 for t in result.trials for r in t["results"])


def test_pbt_snippet(in_tmp):
    namespace: dict = {}
    exec(compile(_snippets()[1], "README PBT snippet", "exec"), namespace)
    results = namespace["results"]
    lineage = results.metadata["scheduler"]["lineage"]
    assert lineage and results.metadata["executor"] == "population"
    assert (in_tmp / "pbt.png").stat().st_size > 0
    exploited = {e["trial_id"] for e in lineage}
    for trial in results.trials:
        if trial["trial_id"] in exploited:   # its report after the copy names the source (an in-memory gather)
            assert any("pbt_source" in r for r in trial["results"])
    assert 0.0 <= results.reward <= 1.0
