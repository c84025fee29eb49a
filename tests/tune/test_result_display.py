"""How an experiment's result shows itself: the HTML summary in Jupyter, the leaderboard DataFrame, the plot."""
import xml.etree.ElementTree as ET

import pytest
from tune_trial_fns import ListSearcher, scripted_trial

from jaxgluon.tune import tune
from jaxgluon.tune.result import HTML_TOP_TRIALS, format_value

# Four trials of different quality, one failing at epoch 2, and a value that must be escaped in HTML.
CONFIGS = [{"x": 0.2, "tag": "a"}, {"x": 0.9, "tag": "<b>&"}, {"x": 0.5, "tag": "c", "fail_at": 2},
           {"x": 0.7, "tag": "d"}, {"x": 0.1, "tag": "e"}, {"x": 0.3, "tag": "f"}]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return tune(scripted_trial, None, search_strategy=ListSearcher(CONFIGS), epochs=3, num_trials=len(CONFIGS),
                output_directory=tmp_path_factory.mktemp("exp"))


def test_leaderboard_is_a_ranked_dataframe(result):
    pd = pytest.importorskip("pandas")
    board = result.leaderboard()
    assert isinstance(board, pd.DataFrame) and len(board) == len(CONFIGS)
    assert list(board["trial_id"]) == [1, 3, 5, 2, 0, 4]   # by best reward; trial 2 failed at epoch 2 (0.25 at epoch 1)
    assert board["status"].iloc[0] == "COMPLETED" and board["trial_id"].iloc[0] == result.best_trial_id
    assert board["best_reward"].iloc[0] == pytest.approx(result.best_reward)
    assert list(board["config.x"][:2]) == [0.9, 0.7] and board["config.tag"].iloc[0] == "<b>&"
    assert board.set_index("trial_id").loc[2, "status"] == "ERROR"
    assert (board["seconds"] >= 0).all()
    assert list(board.columns)[-1] == "error"
    pd.testing.assert_frame_equal(board, pd.DataFrame(result.leaderboard_rows())[list(board.columns)])


def test_leaderboard_puts_trials_without_a_reward_last(result):
    pytest.importorskip("pandas")
    crashed = {"trial_id": 99, "config": {"x": 1.0}, "status": "ERROR", "rewards": [], "best_reward": None}
    extended = type(result)(result.best_config, result.best_reward, result.best_trial_id,
                            [crashed, *result.trials], result.metadata, result.experiment_dir)
    assert list(extended.leaderboard()["trial_id"]) == [1, 3, 5, 2, 0, 4, 99]


def test_html_summary_shows_best_config_status_and_top_trials(result):
    root = ET.fromstring(result._repr_html_())   # well-formed, every value escaped
    fields_table, board = root.findall("table")
    fields = {tr.find("th").text: tr.find("td").text for tr in fields_table.findall("tr")}
    assert fields["best reward"] == f"{format_value(result.best_reward)} (trial 1)"
    assert fields["best config"] == "x=0.9, tag=<b>&"
    assert fields["trials"] == "5 completed, 1 error"
    assert fields["stopped by"] == result.metadata["stop_reason"]
    assert fields["experiment_dir"] == str(result.experiment_dir)
    header, *rows = [["".join(td.itertext()) for td in tr] for tr in board.findall("tr")]
    assert header[:3] == ["trial_id", "best_reward", "reward"] and "config.tag" in header
    assert [row[0] for row in rows] == ["1", "3", "5", "2", "0"][:HTML_TOP_TRIALS]
    assert f"Top {HTML_TOP_TRIALS} of {len(CONFIGS)} trials" in "".join(root.itertext())
    assert "<b>&" not in result._repr_html_()


def test_repr_stays_one_useful_line(result):
    text = repr(result)
    assert "\n" not in text and f"best_reward={result.best_reward}" in text and "'x': 0.9" in text


def test_plot_training_curves_returns_a_figure_and_saves(result, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.close("all")
    fig = result.plot_training_curves(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000 and plt.get_fignums() == []
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [t["rewards"] for t in result.trials]
    times, best = fig.axes[1].get_lines()[0].get_data()
    assert list(best) == sorted(best) and best[-1] == pytest.approx(result.best_reward)


def test_format_value():
    assert format_value({"name": "sgd", "learning_rate": 0.0123456, "nesterov": False}) == \
        "sgd(learning_rate=0.01235, nesterov=False)"
    assert format_value(None) == "-" and format_value([1, 2.5]) == "[1, 2.5]"


def test_to_dataframe_keeps_every_trial_in_id_order(result):
    pytest.importorskip("pandas")
    frame = result.to_dataframe()
    assert list(frame["trial_id"]) == [t["trial_id"] for t in result.trials]
    assert list(frame["rewards"]) == [t["rewards"] for t in result.trials] and "config.x" in frame.columns
