"""`thinkc bench ...` on CPU at small sizes: each command runs, prints its table and writes JSON
with the environment (correctness only, no timing assertions)."""
import json

import pytest
from typer.testing import CliRunner

from thinkc.cli.main import app
from thinkc.gist.rule import GistFlags

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


def _bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", *args, "--device", "cpu", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["environment"]["device"] == "cpu" and data["environment"]["torch"]
    assert data["results"]
    return data["results"]


def test_bench_help_lists_every_target():
    res = runner.invoke(app, ["bench", "--help"])
    assert res.exit_code == 0
    for name in ("mask", "attention", "compact", "decode", "cts"):
        assert name in res.output


def test_bench_mask_small(tmp_path):
    rows = _bench(tmp_path, "mask", "-L", "512", "-L", "1000", "--block-size", "64", "--repeats", "1")
    assert [r["L"] for r in rows] == [512, 1000] and all(r["equal"] for r in rows)


def test_bench_attention_small_matches_flags_and_reorder(tmp_path):
    rows = _bench(tmp_path, "attention", "-L", "512", "--q-heads", "4", "--kv-heads", "2", "--head-dim", "16",
                  "--repeats", "1", "--warmup", "1")
    (row,) = rows
    assert row["pass"] == "fwd" and 0 < row["block_sparsity"] < 1
    for key in ("tiles_computed", "tiles_computed_reordered", "tiles_computed_causal"):
        assert 0 < row[key] <= 1


@pytest.mark.parametrize("args, says", [
    (["attention", "-L", "256", "--backward"], "needs a CUDA device"),
    (["decode", "--model", "random-7b", "-b", "1"], "GPU benchmark"),
    (["decode", "--model", "tiny", "-b", "0"], "--batch-size"),
    (["mask", "-L", "0"], "--length"),
    (["attention", "-L", "0"], "--length"),
    (["cts", "--n", "0"], "--n"),
    (["compact", "--drop-fraction", "2"], "--drop-fraction"),
    (["mask", "--repeats", "0"], "--repeats"),
])
def test_bench_bad_input_is_refused_without_a_traceback(monkeypatch, capsys, args, says):
    from _cli import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "bench", *args, "--device", "cpu")
    assert code == 2 and says in out + err and "Traceback" not in out + err


def test_bench_compact_small(tmp_path):
    rows = _bench(tmp_path, "compact", "--batch", "2", "--layers", "2", "--kv-heads", "2", "--head-dim", "16",
                  "--tokens", "64", "--repeats", "1")
    assert len(rows) == 2 and all(r["match"] for r in rows)


def test_bench_decode_and_cts_on_tiny_checkpoints(tmp_path):
    # 160 new tokens: the trained model closes its first thought (~60-100 tokens) well before the end
    rows = _bench(tmp_path, "decode", "--model", "tiny-lightthinker", "-b", "2", "--max-new-tokens", "160",
                  "--compress-every", "16")
    assert {r["method"] for r in rows} == {"thinkc vanilla", "thinkc lightthinker", "thinkc h2o", "hf-dynamic",
                                           "forward-loop"}
    by = {r["method"]: r for r in rows}
    assert by["thinkc lightthinker"]["peak_kv"] < by["thinkc vanilla"]["peak_kv"]
    assert by["thinkc lightthinker"]["compressions"] > 0  # trained model: compresses at its own <w>
    assert all(r["tokens_per_s"] > 0 for r in rows)
    rows = _bench(tmp_path, "cts", "--model", "tiny-sft", "--n", "3", "--backend", "native")
    assert rows[0]["backend"] == "native" and 0 < rows[0]["achieved"] <= 1


def test_reorder_study_counts_tiles_of_the_reference_mask():
    from thinkc.bench.attention import computed_tile_fraction, reorder_study
    from thinkc.bench.mask import synthetic_layout
    from thinkc.gist.rule import reference_mask

    meta = synthetic_layout(2048, seed=1, flags=GistFlags()).batched()
    study = reorder_study(meta, block=64)
    vis = reference_mask(meta)[0]
    assert study["tiles_computed"] == computed_tile_fraction(vis, 64)
    # short thoughts: the gist mask needs about as many tiles as causal; reordering needs far fewer
    assert study["tiles_computed_reordered"] < 0.7 * study["tiles_computed"]


def test_bench_batching_same_tokens(tmp_path):
    rows = _bench(tmp_path, "batching", "--model", "tiny-sft", "--n", "6", "-b", "2", "--new-tokens", "24")
    assert [r["schedule"] for r in rows] == ["fixed batches", "continuous batching"]
    assert all(r["same_tokens"] and r["tokens"] > 0 for r in rows)
