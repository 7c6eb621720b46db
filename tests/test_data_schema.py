"""Record schema: validation, line-numbered errors, --skip-invalid counting, atomic writes."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from thinkc.data.schema import Record, read_records, read_records_with_skips, write_records
from thinkc.errors import ThinkcError

GOOD = {"id": "a", "question": "1 + 1?", "thinking": "1 + 1 = 2.", "answer": "\\boxed{2}"}


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_round_trip_keeps_every_field(tmp_path):
    recs = [Record("a", "q?", "t1\n\nt2", "\\boxed{1}", system="sys", meta={"k": [1, 2]}),
            Record("b", "é ü 中", "", "\\boxed{2}")]
    write_records(tmp_path / "r.jsonl", recs)
    assert read_records(tmp_path / "r.jsonl") == recs
    assert "system" not in recs[1].to_dict() and "meta" not in recs[1].to_dict()


@pytest.mark.parametrize("bad, reason", [
    ({k: v for k, v in GOOD.items() if k != "answer"}, "missing field(s) answer"),
    ({**GOOD, "thinkng": "x"}, "unknown field(s) thinkng"),
    ({**GOOD, "id": ""}, "'id' must be a non-empty string"),
    ({**GOOD, "question": 3}, "'question' must be a string"),
    ({**GOOD, "answer": "  "}, "'answer' is empty"),
    ({**GOOD, "meta": [1]}, "'meta' must be an object"),
    ({**GOOD, "system": 1}, "'system' must be a string"),
])
def test_from_dict_names_the_problem(bad, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Record.from_dict(bad)


def test_numeric_id_becomes_text():
    assert Record.from_dict({**GOOD, "id": 7}).id == "7"


def test_errors_carry_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    _write_lines(p, [json.dumps(GOOD), "", json.dumps({**GOOD, "id": "b", "answer": 5})])
    with pytest.raises(ThinkcError, match=rf"{p}:3: field 'answer' must be a string"):
        read_records(p)
    _write_lines(p, [json.dumps(GOOD), "{not json"])
    with pytest.raises(ThinkcError, match=rf"{p}:2: not valid JSON"):
        read_records(p)
    _write_lines(p, [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(ThinkcError, match=rf"{p}:2: duplicate id 'a' \(first on line 1\)"):
        read_records(p)
    with pytest.raises(ThinkcError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_skip_invalid_counts_what_it_skips(tmp_path):
    p = tmp_path / "d.jsonl"
    _write_lines(p, [json.dumps(GOOD), "{oops", "[1, 2]", json.dumps({"id": "x"}),
                     json.dumps({**GOOD, "id": "b"}), json.dumps(GOOD)])
    recs, skipped = read_records_with_skips(p)
    assert [r.id for r in recs] == ["a", "b"]
    assert skipped == 4
    assert [r.id for r in read_records(p, skip_invalid=True)] == ["a", "b"]


def test_write_rejects_invalid_dicts(tmp_path):
    with pytest.raises(ValueError, match="missing field"):
        write_records(tmp_path / "x.jsonl", [{"id": "a"}])
    assert not (tmp_path / "x.jsonl").exists()


def test_exception_mid_write_keeps_old_file(tmp_path):
    p = tmp_path / "r.jsonl"
    write_records(p, [Record.from_dict(GOOD)])
    before = p.read_bytes()

    def rows():
        yield Record("n1", "q", "t", "a")
        raise RuntimeError("crash while producing records")

    with pytest.raises(RuntimeError):
        write_records(p, rows())
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.jsonl"]  # no temp file left behind


def test_killed_writer_leaves_no_partial_output(tmp_path):
    """SIGKILL a process in the middle of write_records: the target keeps its old content (or
    does not exist), never a prefix of the new one."""
    p = tmp_path / "r.jsonl"
    write_records(p, [Record.from_dict(GOOD)])
    before = p.read_bytes()
    marker = tmp_path / "started"
    code = textwrap.dedent(f"""
        import os, signal, pathlib
        from thinkc.data.schema import Record, write_records
        def rows():
            for i in range(1000):
                if i == 500:
                    pathlib.Path({str(marker)!r}).touch()
                    os.kill(os.getpid(), signal.SIGKILL)
                yield Record(f"r{{i}}", "q" * 100, "t" * 100, "a")
        write_records({str(p)!r}, rows())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9 and marker.exists()
    assert p.read_bytes() == before
    assert [r.id for r in read_records(p)] == ["a"]
