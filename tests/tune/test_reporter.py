import pytest

from jaxgluon.scheduler import Decision
from jaxgluon.tune import TrialStopped
from jaxgluon.tune.reporter import Reporter


def make(tmp_path, answers):
    sent = []

    def send(result):
        sent.append(result)
        return answers[len(sent) - 1]

    return Reporter(7, tmp_path / "ckpt" / "7", max_epochs=3, seed=11, send=send), sent


def test_reports_reach_the_runner_and_decisions_come_back(tmp_path):
    reporter, sent = make(tmp_path, ["CONTINUE", "STOP"])
    assert reporter.checkpoint_dir.is_dir() and reporter.trial_id == 7 and reporter.seed == 11
    assert reporter(epoch=1, reward=0.5, train_loss=2.0) is Decision.CONTINUE
    decision = reporter(epoch=2, reward=0.6)
    assert decision == "STOP" and decision is Decision.STOP
    assert sent == [{"epoch": 1, "reward": 0.5, "train_loss": 2.0}, {"epoch": 2, "reward": 0.6}]
    with pytest.raises(TrialStopped, match="STOP"):
        reporter(epoch=3, reward=0.7)
    assert len(sent) == 2


def test_a_relaunch_knows_the_last_epoch_its_trial_reported(tmp_path):
    reporter, _ = make(tmp_path, ["CONTINUE", "PAUSE"])
    assert reporter.reported_epoch == 0
    reporter(epoch=1, reward=0.5)
    reporter(epoch=2, reward=0.6)
    reporter.close()
    again, _ = make(tmp_path, [])
    assert again.reported_epoch == 2


def test_pause_also_ends_the_launch(tmp_path):
    reporter, _ = make(tmp_path, ["PAUSE"])
    assert reporter(epoch=1, reward=0.1) == "PAUSE"
    with pytest.raises(TrialStopped):
        reporter(epoch=2, reward=0.2)


def test_epoch_defaults_to_next_and_bad_reports_are_rejected(tmp_path):
    reporter, sent = make(tmp_path, ["CONTINUE"] * 3)
    reporter(reward=0.1)
    assert sent[-1]["epoch"] == 1
    with pytest.raises(ValueError, match="epoch"):
        reporter(epoch=0, reward=0.1)
    with pytest.raises(ValueError, match="reward"):
        reporter(epoch=2)
    with pytest.raises(TypeError, match="real number"):
        reporter(epoch=2, reward="high")
