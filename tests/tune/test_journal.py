import json
import math

import pytest

from jaxgluon.tune.journal import Journal, read_journal, write_json_atomic, read_json


@pytest.mark.parametrize("sync", ["fsync", "flush"])
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
