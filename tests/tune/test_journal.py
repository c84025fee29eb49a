import json
import math
import os
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


def test_torn_last_line_is_skipped_and_truncated(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append("start", trial_id=0)
    with open(path, "a") as f:
        f.write('{"seq": 1, "event": "res')  # the driver died mid-write
    assert [e["event"] for e in read_journal(path)] == ["start"]
    with Journal(path) as journal:
        assert journal.append("start", trial_id=1)["seq"] == 1
    assert [e["trial_id"] for e in read_journal(path)] == [0, 1]


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"seq": 0, "event": "start"}\nnot json\n{"seq": 2, "event": "end"}\n')
    with pytest.raises(ValueError, match="line 2"):
        list(read_journal(path))


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
