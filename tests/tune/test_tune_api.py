"""tune() over a plain python function with the real schedulers and searchers."""
import pathlib

import pytest
from tune_trial_fns import ListSearcher, quadratic_trial, scripted_trial

import jaxgluon as ag
from jaxgluon.tune import ExperimentResult, TrialStopped, tune  # noqa: F401 -- the public names


SPACE = {"x": ag.Real(0.0, 1.0), "y": ag.Categorical("a", "b")}


@pytest.mark.parametrize("strategy, options", [("random", None), ("hyperband", {"type": "promotion"})])
def test_tune_finds_a_good_config_of_a_plain_function(tmp_path, strategy, options):
    result = tune(quadratic_trial, SPACE, search_strategy=strategy, num_trials=30, epochs=3, seed=1,
                  scheduler_options=options, output_directory=tmp_path / "exp", journal_sync="flush")
    assert isinstance(result, ExperimentResult) and len(result.trials) == 30
    assert result.best_config["y"] == "b" and abs(result.best_config["x"] - 0.3) < 0.1
    assert result.best_reward == max(t["best_reward"] for t in result.trials)
    assert result.metadata["search_strategy"] == strategy
    assert result.metadata["scheduler"]["max_t"] == 3
    if strategy == "hyperband":  # early stopping saved epochs: not every trial ran all 3
        assert sum(t["num_epochs"] for t in result.trials) < 30 * 3


def test_grid_search_ends_when_the_grid_is_exhausted(tmp_path):
    space = {"x": ag.Categorical(0.1, 0.3, 0.9), "y": ag.Categorical("a", "b")}
    result = tune(quadratic_trial, space, search_strategy="grid", num_trials=100, epochs=1,
                  output_directory=tmp_path / "exp")
    assert len(result.trials) == 6 and result.metadata["stop_reason"] == "exhausted"
    assert result.best_config == {"x": 0.3, "y": "b"}


def test_ag_tune_is_the_plain_function_even_after_submodule_imports(tmp_path):
    import inspect

    import jaxgluon.tune.lineage  # noqa: F401 -- a submodule imported late must not rebind ag.tune
    import jaxgluon.tune.sim  # noqa: F401
    from jaxgluon.tune.api import tune as api_tune
    from jaxgluon.tune.sim import simulate  # noqa: F401 -- the package's submodules import as before

    assert inspect.isfunction(ag.tune) and ag.tune is api_tune is tune
    assert list(inspect.signature(ag.tune).parameters)[:4] == ["train_fn", "search_space", "search_strategy",
                                                                "num_trials"]
    result = ag.tune(scripted_trial, None, search_strategy=ListSearcher([{"x": 0.5}]), epochs=1,
                     output_directory=tmp_path / "exp")
    assert result.best_config == {"x": 0.5}


def test_ag_tune_is_the_function_when_a_submodule_is_imported_first():
    import subprocess
    import sys

    code = ("import jaxgluon.tune.sim, inspect, jaxgluon as ag; from jaxgluon.tune import ExperimentResult; "
            "import jaxgluon.tune.lineage as lineage; import jaxgluon.tune.sim.simulator as simulator; "
            "assert lineage.__name__ == 'jaxgluon.tune.lineage' and simulator.__name__ == 'jaxgluon.tune.sim.simulator'; "
            "assert inspect.isfunction(ag.tune), ag.tune; print(inspect.signature(ag.tune))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("(train_fn")


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown search strategy"):
        tune(quadratic_trial, SPACE, search_strategy="annealing", output_directory=tmp_path / "a")
    with pytest.raises(ValueError, match="epochs"):
        tune(quadratic_trial, SPACE, epochs=0, output_directory=tmp_path / "b")
    with pytest.raises(ValueError, match="num_workers"):
        tune(quadratic_trial, SPACE, num_workers=0, output_directory=tmp_path / "c")
    with pytest.raises(ValueError, match="output_directory"):
        tune(quadratic_trial, SPACE, resume=True)
    with pytest.raises(TypeError, match="search_strategy"):
        tune(quadratic_trial, SPACE, search_strategy=42, output_directory=tmp_path / "d")


def test_storage_path_is_the_root_of_the_experiment_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = {"x": ag.Real(0, 1), "y": "b"}
    fresh = tune(quadratic_trial, space, num_trials=1, epochs=1, executor="in_process", storage_path="store")
    assert pathlib.Path(fresh.experiment_dir).parent.resolve() == (tmp_path / "store").resolve()
    named = tune(quadratic_trial, space, num_trials=1, epochs=1, executor="in_process", storage_path="store",
                 output_directory="exp")
    assert pathlib.Path(named.experiment_dir).resolve() == (tmp_path / "store" / "exp").resolve()
    assert (tmp_path / "store" / "exp" / "journal.jsonl").exists()
    with pytest.raises(ValueError, match="is not inside storage_path"):
        tune(quadratic_trial, space, num_trials=1, epochs=1, executor="in_process", storage_path="store",
             output_directory=tmp_path / "elsewhere")
