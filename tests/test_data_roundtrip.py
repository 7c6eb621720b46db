"""Every `data export` format reads back with `data import` (id, system and meta, the CTS ratio
included); the exports load with `datasets`; LLaMA-Factory's dataset_info.json entry is written."""
import json

import pytest
from typer.testing import CliRunner

from thinkc.data.exporters import dataset_info_entry, export_alpaca, export_messages, write_dataset_info
from thinkc.data.importers import import_file
from thinkc.data.schema import Record, write_records

RECS = [Record("a", "What is 2 + 2?", "2 + 2 = 4.\n\nHmm, yes.", "\\boxed{4}", system="Be brief.",
               meta={"cts": {"ratio": 0.7, "tokens_before": 10, "tokens_after": 7, "backend": "llmlingua2"}}),
        Record("b", "What is 3 * 3?", "3 * 3 = 9.", "\\boxed{9}"),
        Record("c", "Halve 10.", "10 / 2 = 5.", "\\boxed{5}", meta={"source": "synth"})]
WRITERS = {"messages": (export_messages, "m.jsonl"), "alpaca": (export_alpaca, "a.json")}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("ratio_tag", [False, True])
def test_export_then_import_gives_the_records_back(tmp_path, fmt, ratio_tag):
    write, name = WRITERS[fmt]
    write(RECS, tmp_path / name, ratio_tag=ratio_tag)
    back, skipped = import_file(tmp_path / name)  # format detected
    assert skipped == 0 and back == RECS
    assert back[0].meta["cts"]["ratio"] == 0.7


def test_a_ratio_tag_that_the_meta_does_not_give_stays(tmp_path):
    rows = [{"instruction": "What is 1 + 1?\n<ratio>0.5</ratio>", "input": "", "output": "<think>1+1=2</think>2"}]
    (tmp_path / "x.json").write_text(json.dumps(rows))
    (rec,), _ = import_file(tmp_path / "x.json")
    assert rec.question.endswith("<ratio>0.5</ratio>") and rec.id == "x-1" and rec.meta == {}


def test_cli_export_import_round_trip_and_dataset_info(tmp_path):
    from thinkc.cli.main import app

    src = tmp_path / "recs.jsonl"
    write_records(src, RECS)
    run = CliRunner()
    for fmt, name in (("alpaca", "train_alpaca.json"), ("messages", "train_msgs.jsonl")):
        res = run.invoke(app, ["data", "export", str(src), "-o", str(tmp_path / name), "-f", fmt])
        assert res.exit_code == 0, res.output
        back = tmp_path / f"back_{fmt}.jsonl"
        res = run.invoke(app, ["data", "import", str(tmp_path / name), "-o", str(back)])
        assert res.exit_code == 0, res.output
        assert back.read_text() == src.read_text()
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["train_alpaca"] == {"file_name": "train_alpaca.json", "formatting": "alpaca",
                                    "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                                "system": "system"}}
    assert info["train_msgs"]["formatting"] == "sharegpt" and info["train_msgs"]["tags"]["system_tag"] == "system"


def test_dataset_info_keeps_other_entries(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    write_dataset_info(tmp_path / "x.json", "alpaca")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"mine", "x"} and info["x"] == dataset_info_entry(tmp_path / "x.json", "alpaca")["x"]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_exports_load_with_datasets(tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    write, name = WRITERS[fmt]
    write(RECS, tmp_path / name)
    ds = datasets.load_dataset("json", data_files=str(tmp_path / name), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 3 and ds[0]["id"] == "a" and ds[0]["meta"]["cts"]["ratio"] == pytest.approx(0.7)
    if fmt == "messages":
        assert [m["role"] for m in ds[0]["messages"]] == ["system", "user", "assistant"]
        assert ds[1]["messages"][0] == {"role": "user", "content": "What is 3 * 3?"}
    else:
        assert ds[0]["system"] == "Be brief." and ds[1]["system"] is None
        assert ds[2]["output"].startswith("<think>\n10 / 2 = 5.\n</think>")
