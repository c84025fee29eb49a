"""The example notebooks: committed without outputs, and each runs top to bottom in a fresh Jupyter kernel."""
from __future__ import annotations

import json
import os
import pathlib
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("JAXGLUON_SHARED", REPO.parent / "shared"))
NOTEBOOKS = sorted((REPO / "experiments").glob("**/*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_there_is_a_notebook():
    assert REPO / "experiments" / "quickstart.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_notebooks_have_no_outputs(path):
    """Outputs stay out of git so diffs stay readable: clear them before committing (Jupyter: Edit > Clear
    Outputs of All Cells; or `jupyter nbconvert --clear-output --inplace <notebook>`)."""
    notebook = json.loads(path.read_text())
    dirty = [i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them before committing"
    assert "widgets" not in notebook.get("metadata", {}), f"{path.name}: saved widget state; clear it before committing"


@pytest.mark.slow
@pytest.mark.alone   # its fits have time_limits: under xdist no other test runs beside it (tests/conftest.py)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the dev extra (pip install -e '.[dev]') runs notebooks")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra (pip install -e '.[dev]') runs notebooks")
    pytest.importorskip("ipykernel", reason="the dev extra (pip install -e '.[dev]') runs notebooks")
    notebook = nbformat.read(path, as_version=4)
    # The kernel starts in the notebook's folder, as in Jupyter, and imports this checkout's jaxgluon.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook.cells.append(nbformat.v4.new_code_cell("import jaxgluon; print(jaxgluon.__file__)"))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()   # raises CellExecutionError (the cell, its traceback) on the first failing cell
    print(f"{path.name} ran in {time.perf_counter() - start:.0f} s")
    (tmp_path / path.name).write_text(nbformat.writes(notebook))   # the executed notebook, for a look after a failure

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert pathlib.Path(outputs[-1]["text"].strip()) == REPO / "jaxgluon" / "__init__.py"
    if path.name == "quickstart.ipynb":
        _check_quickstart(notebook)


def _check_quickstart(notebook) -> None:
    """What the tutorial promises to show: HTML results, DataFrame leaderboards, inline figures, the widget bar,
    and no warnings printed on the way."""
    def cell_outputs(source_start: str) -> list:
        cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(source_start))
        return cell.outputs

    def data(outputs: list, mime: str) -> list:
        return [out["data"][mime] for out in outputs if mime in out.get("data", {})]

    fit = cell_outputs("results = task.fit(")
    assert any("validation top-1" in html for html in data(fit, "text/html")), "Results shows no HTML summary"
    assert data(fit, WIDGET_VIEW), "fit's progress is not the notebook widget"
    assert any("<table" in html and "best_reward" in html for html in data(cell_outputs("results.leaderboard()"),
                                                                           "text/html"))
    for start in ("results.plot_training_curves()", "hb.plot_training_curves()"):
        assert len(data(cell_outputs(start), "image/png")) == 1, f"{start}: one inline figure"
    assert data(cell_outputs("example = "), "image/png"), "the predicted image is not shown"
    assert any("best reward" in html for html in data(cell_outputs("import math"), "text/html"))
    streams = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for out in cell.outputs if out.output_type == "stream" and out.name == "stderr")
    floods = ("TqdmWarning", "TqdmExperimentalWarning", "IProgress not found", "More than 20 figures", "\r")
    assert not [flood for flood in floods if flood in streams], streams
    if SHARED.is_dir():   # without its pretrained weights fit warns (loudly, by design) that it starts from scratch
        assert "Warning" not in streams, streams
