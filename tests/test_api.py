"""The README's Python API example runs, and gives what `thinkc infer` gives for the same prompt."""
import ast
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

README = Path(__file__).parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_equals_thinkc_infer(tmp_path, capsys):
    from thinkc.cli.main import app

    code = _readme_example()
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 — the documented example itself
    (out,) = scope["outs"]
    printed = capsys.readouterr().out.split()
    assert printed[:3] == [str(out.answer), str(out.metrics["peak_kv"]), str(out.metrics["compressions"])]

    (question,) = ast.literal_eval(re.search(r"generate\((\[.*?\])", code, re.S).group(1))
    max_new = re.search(r"max_new_tokens=(\d+)", code).group(1)
    run = tmp_path / "run.jsonl"
    res = CliRunner().invoke(app, ["infer", "--prompt", question, "--output", str(run), "--method", "lightthinker",
                                   "--model", "tiny-lightthinker", "--max-new-tokens", max_new, "--device", "cpu"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in run.read_text().splitlines()]
    assert (out.id, out.text, out.answer, out.prompt_tokens) == (row["id"], row["text"], row["pred"], row["prompt_tokens"])
    timeless = lambda m: {k: v for k, v in m.items() if k != "wall_s"}  # noqa: E731
    assert timeless(out.metrics) == timeless(row["metrics"]) and out.metrics["generated_tokens"] > 0


def test_prompt_ids_end_with_the_think_prefill_and_bad_input_is_refused():
    from thinkc.api import load
    from thinkc.errors import ThinkcError

    lt = load("tiny-sft", method="vanilla")
    ids = lt.prompt_ids({"question": "2 + 2?", "system": "Be brief."})
    text = lt.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nBe brief.") and text.endswith("<|im_start|>assistant\n<think>\n")
    with pytest.raises(ThinkcError, match="empty"):
        lt.generate(["  "])
    with pytest.raises(ThinkcError, match="choose one of"):
        load("tiny-sft", method="beam")
    assert lt.generate([]) == []


def test_generate_under_a_kv_budget_gives_the_same_texts():
    from thinkc.api import load

    lt = load("tiny-lightthinker")
    q = ["Sam has 48 pencils. He first gets 25 more. He then doubles the pencils. He next loses 59. "
         "How many pencils does Sam have now?", "Ann has 12 cards. She first gets 30 more. How many cards now?"] * 2
    free = lt.generate(q, max_new_tokens=160, batch_size=4)
    pooled = lt.generate(q, max_new_tokens=160, batch_size=4, kv_budget=320)
    assert [g.text for g in pooled] == [g.text for g in free]
