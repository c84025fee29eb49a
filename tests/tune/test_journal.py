import json
import math
import os
import pathlib
import threading

import pytest

from jaxgluon.tune.journal import Journal, read_journal, write_json_atomic, read_json


@pytest.mark.parametrize("sync", ["group", "fsync", "flush"])
def test_events_round_trip_with_sequence_numbers(tmp_path, sync):
    path = tmp_path / "journal.jsonl"
    with Journal(path, sync=sync) as journal:
        journal.append("start", trial_id=0, config={"lr": 0.1})
        journal.append("result", trial_id=0, result={"epoch": 1, "reward": float("nan")})
    events = list(read_journal(path))
    assert [(e["seq"], e["event"]) for e in events] == [(0, "start"), (1, "result")]
    assert math.isnan(events[1]["result"]["reward"])
    with Journal(path, sync=sync) as journal:  # reopening continues the sequence
        assert journal.append("end", trial_id=0)["seq"] == 2


def _journal(path, n: int) -> bytes:
    with Journal(path) as journal:
        for i in range(n):
            journal.append("start", trial_id=i, config={"x": i})
    return path.read_bytes()


def _backups(path):
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


def test_torn_last_line_is_truncated_with_a_warning_and_a_copy(tmp_path):
    path = tmp_path / "journal.jsonl"
    _journal(path, 1)
    with open(path, "a") as f:
        f.write('{"seq": 1, "event": "res')  # the driver died mid-write
    original = path.read_bytes()
    assert [e["event"] for e in read_journal(path)] == ["start"]   # a reader skips a live writer's partial line
    with pytest.warns(RuntimeWarning, match=r"the last line \(line 2\) is cut off.*dropped line 2 \(24 bytes\) and "
                                            r"kept the first 1 records"):
        journal = Journal(path)
    with journal:
        assert journal.recovery.first_line == 2 and journal.recovery.dropped_bytes == 24
        assert journal.append("start", trial_id=1)["seq"] == 1
    assert [e["trial_id"] for e in read_journal(path)] == [0, 1]
    (backup,) = _backups(path)
    assert backup.read_bytes() == original


@pytest.mark.parametrize("bad, reason", [
    (b"not json", "line 3 is not valid JSON"),
    (b'{"seq": 7, "event": "start"}', "line 3 has seq 7, expected 2"),
    (b'[1, 2]', "line 3 is not a journal event"),
    (b'{"seq": 2, "event": "st\xffrt"}', "line 3 is not valid JSON"),        # a flipped bit: invalid UTF-8
])
def test_corrupt_middle_line_is_recovered_by_truncating_to_the_last_good_record(tmp_path, bad, reason):
    path = tmp_path / "journal.jsonl"
    lines = _journal(path, 5).split(b"\n")
    lines[2] = bad
    path.write_bytes(b"\n".join(lines))
    original = path.read_bytes()
    with pytest.warns(RuntimeWarning, match=reason + ".*reading stops at the 2 good records"):
        assert [e["trial_id"] for e in read_journal(path)] == [0, 1]
    dropped = len(original) - len(b"\n".join(lines[:2])) - 1
    with pytest.warns(RuntimeWarning, match=reason + f".*dropped lines 3-5 \\({dropped} bytes\\) and kept the "
                                                     "first 2 records"):
        journal = Journal(path)
    with journal:
        assert journal.append("start", trial_id=9)["seq"] == 2
    assert [e["trial_id"] for e in read_journal(path)] == [0, 1, 9]
    (backup,) = _backups(path)
    assert backup.read_bytes() == original and backup.name.startswith("journal.jsonl.corrupt-")


def test_an_intact_journal_is_left_alone(tmp_path, recwarn):
    path = tmp_path / "journal.jsonl"
    data = _journal(path, 3)
    with Journal(path) as journal:
        assert journal.recovery is None and journal.seq == 3
    assert path.read_bytes() == data and not _backups(path) and not recwarn.list


def _cut_line_9(path: pathlib.Path) -> pathlib.Path:
    """Line 9 of a journal of more than 12 lines loses its end (a corrupt record mid-file)."""
    lines = path.read_bytes().split(b"\n")
    assert len(lines) > 12
    lines[8] = lines[8][:-7]
    path.write_bytes(b"\n".join(lines))
    return path


def _interrupted_once(config, reporter):
    """Stateless (re-running an epoch is harmless); raises Ctrl-C in the driver once, at ``interrupt_at``."""
    for epoch in range(1, reporter.max_epochs + 1):
        marker = pathlib.Path(config["marker"])
        if config.get("interrupt_at") == epoch and not marker.exists():
            marker.touch()
            raise KeyboardInterrupt
        if reporter(epoch=epoch, reward=config["x"] * epoch) != "CONTINUE":
            return


def test_resume_proceeds_after_a_corrupt_journal_line(tmp_path):
    """An interrupted experiment whose journal then got a corrupt line mid-file resumes (was: "line 9 is not valid
    JSON" and no way on); the dropped trials run again and the search ends as an uninterrupted one would."""
    from tune_trial_fns import ListSearcher
    from jaxgluon.tune import tune
    configs = [{"x": x, "marker": str(tmp_path / "interrupted")} for x in (0.3, 0.8, 0.5, 0.6, 0.9, 0.4)]
    configs[3]["interrupt_at"] = 2
    exp = tmp_path / "exp"
    with pytest.raises(KeyboardInterrupt):
        tune(_interrupted_once, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=6,
             output_directory=exp, executor="in_process")   # the interrupt reaches the driver in-process
    path = _cut_line_9(exp / "journal.jsonl")
    with pytest.warns(RuntimeWarning, match="recovered the journal .*line 9 is not valid JSON.*dropped lines 9-"):
        result = tune(_interrupted_once, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=6,
                      output_directory=exp, resume=True, executor="in_process")
    assert [t["config"]["x"] for t in result.trials] == [c["x"] for c in configs]
    assert all(t["status"] == "COMPLETED" and t["epochs"] == [1, 2, 3] for t in result.trials)
    assert result.best_config["x"] == 0.9 and len(_backups(path)) == 1


def test_resume_of_a_finished_experiment_with_a_corrupt_line_does_not_trust_a_newer_snapshot(tmp_path):
    """The scheduler snapshot of a finished experiment has seen every record; once recovery drops records, the
    snapshot is ahead of the journal and must not be loaded (it lost two trials and ended one after one epoch)."""
    from tune_trial_fns import ListSearcher
    from jaxgluon.tune import tune
    configs = [{"x": x, "marker": str(tmp_path / "unused")} for x in (0.3, 0.8, 0.5, 0.6, 0.9, 0.4)]
    exp = tmp_path / "exp"
    first = tune(_interrupted_once, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=6,
                 output_directory=exp, executor="in_process")
    _cut_line_9(exp / "journal.jsonl")
    with pytest.warns(RuntimeWarning, match="recovered the journal"):
        result = tune(_interrupted_once, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=6,
                      output_directory=exp, resume=True, executor="in_process")
    assert [t["config"]["x"] for t in result.trials] == [c["x"] for c in configs]
    assert all(t["status"] == "COMPLETED" and t["epochs"] == [1, 2, 3] for t in result.trials)
    assert result.best_config == first.best_config


def test_numpy_metrics_are_serialised_and_bad_mode_rejected(tmp_path):
    np = pytest.importorskip("numpy")
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append("result", result={"reward": np.float32(0.5), "hist": np.arange(3)})
    assert next(read_journal(tmp_path / "j.jsonl"))["result"] == {"reward": 0.5, "hist": [0, 1, 2]}
    with pytest.raises(ValueError, match="sync mode"):
        Journal(tmp_path / "k.jsonl", sync="sometimes")


def test_atomic_json_write_replaces_whole_file(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"a": 1})
    write_json_atomic(tmp_path / "s.json", {"b": 2})
    assert read_json(tmp_path / "s.json") == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    assert json.loads((tmp_path / "s.json").read_text()) == {"b": 2}


def test_a_journal_is_written_by_one_driver_at_a_time(tmp_path):
    with Journal(tmp_path / "j.jsonl"):
        with pytest.raises(RuntimeError, match="in use by another running experiment driver"):
            Journal(tmp_path / "j.jsonl")
    Journal(tmp_path / "j.jsonl").close()  # free again once closed


def test_group_commit_appends_reach_the_os_at_once_and_share_fsyncs(tmp_path, monkeypatch):
    """'group': append returns before the disk sync; a burst of events shares one background fsync, and
    wait_durable / close return only once everything is synced."""
    release, calls, real_fsync = threading.Event(), [], os.fsync

    def slow_fsync(fd):
        calls.append(os.fstat(fd).st_size)
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, sync="group")
    for i in range(20):  # would block 20 times in 'fsync' mode; here the first fsync is still stuck
        journal.append("result", trial_id=i)
    assert len(list(read_journal(path))) == 20  # visible to a reader (survives kill -9) before any sync ended
    assert len(calls) <= 1
    release.set()
    journal.wait_durable()
    size = path.stat().st_size
    assert calls[-1] == size  # the last fsync covered every line written
    assert len(calls) <= 2
    journal.append("end", trial_id=0)
    journal.close()
    assert calls[-1] == path.stat().st_size > size


def test_group_commit_reports_a_failed_fsync(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    journal = Journal(tmp_path / "journal.jsonl", sync="group")
    journal.append("start", trial_id=0)
    with pytest.raises(OSError, match="fsync of the journal .* failed"):
        journal.wait_durable()
    journal.close()
