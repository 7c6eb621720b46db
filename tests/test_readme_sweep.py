"""Issue 23's sweep: every command in README.md and every example in a `--help` text runs, from a
temporary folder on a fresh THINKC_HOME, at tiny sizes (options appended to the documented command:
the last value of an option wins). A command added to the README or to a help text fails here until
it is given its tiny size below (or, for the installation commands, a reason not to run it)."""
import itertools
import re
import shlex
from pathlib import Path

import pytest
import typer

from _cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

# documented command -> what is appended to run it at a tiny size ([] = as documented)
TINY = {
    "thinkc data synth -o data/train.jsonl -n 3000 --n-test 200": ["-n", "24", "--n-test", "3"],
    "thinkc infer -i data/train.test.jsonl -o runs/vanilla.jsonl -m vanilla": ["--max-new-tokens", "24"],
    "thinkc infer -i data/train.test.jsonl -o runs/lightthinker.jsonl -m lightthinker": ["--max-new-tokens", "24"],
    "thinkc infer -i data/train.test.jsonl -o runs/h2o.jsonl -m h2o": ["--max-new-tokens", "24"],
    "thinkc eval runs/vanilla.jsonl runs/lightthinker.jsonl runs/h2o.jsonl": [],
    "thinkc doctor": [],
    "make demo": ["--n-test", "2", "--n-cts", "2", "--max-new-tokens", "16"],  # the Makefile runs `thinkc demo`
    # --help examples (cli/train.py); the base recipes --with-base trains are shrunk by BASE_SETS
    "thinkc train tiny_base": ["--max-steps", "1", "--set", "data.synth.n=8"],
    "thinkc train tiny_sft --with-base": ["--max-steps", "1", "--set", "data.synth.n=8", "--set", "data.limit=4"],
    "thinkc train tiny_lightthinker --check": ["--set", "data.synth.n=8"],
}
BASE_SETS = ("train.max_steps=1", "data.synth.n=8")
NOT_RUN = {  # the installation itself: network, CUDA, or the suite this file belongs to
    "make test": "runs this test suite (CI's own command, .ci/run)",
    "python -m venv .venv": "creates a virtual environment (the install CI does with make test)",
    "source .venv/bin/activate": "activates the virtual environment",
    "pip install torch": "downloads a CUDA torch",
    "pip install setuptools>=69 wheel ninja pybind11": "installs build tools from a package index",
    "CUDA_HOME=/usr/local/cuda THINKC_CUDA_ARCHS=80;90 pip install --no-build-isolation -e .[all]":
        "builds the CUDA extension (needs nvcc)",
}


def code_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def shell_commands(block: str) -> list[str]:
    """One normalised command per line (comments dropped, `a && b` split)."""
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        cmd = []
        for w in [*words, "&&"]:
            if w == "&&":
                out += [" ".join(cmd)] if cmd else []
                cmd = []
            else:
                cmd.append(w)
    return out


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    return [c for lang, body in code_blocks(readme()) if lang == "bash" for c in shell_commands(body)]


def listed_commands() -> list[list[str]]:
    """The README's command list (`thinkc data synth|import|...  what it does`), every alternative."""
    (listing,) = [body for lang, body in code_blocks(readme()) if lang == "" and "thinkc doctor" in body]
    out = []
    for line in listing.splitlines():
        words = re.split(r"\s{2,}", line.strip())[0].split()
        assert words[0] == "thinkc", line
        out += [list(p) for p in itertools.product(*(w.split("|") for w in words[1:]))]
    return out


def examples_in(help_text: str) -> list[str]:
    """The commands of a help text's `Examples:` paragraph (`thinkc ...` lines, comments dropped)."""
    found, inside = [], False
    for line in help_text.splitlines():
        text = line.strip()
        if text == "Examples:":
            inside = True
        elif inside and text.startswith("thinkc "):
            found.append(" ".join(shlex.split(text, comments=True)))
        elif inside and text:
            inside = False
    return found


def help_examples(monkeypatch, capsys) -> list[str]:
    """Every example in the --help of every command."""
    from thinkc.cli.main import app

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    examples = []
    for path in walk(typer.main.get_command(app), []):
        code, out, _ = run_cli(monkeypatch, capsys, *path, "--help")
        assert code in (0, None), path
        examples += examples_in(out)
    return examples


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def run_documented(cmd: str, monkeypatch, capsys) -> str:
    """Run one documented command at its tiny size; its stdout."""
    argv = shlex.split(cmd)
    if argv[:2] == ["make", "demo"]:
        assert "$(BIN)/thinkc demo\n" in (ROOT / "Makefile").read_text()
        argv = ["thinkc", "demo"]
    assert argv[0] == "thinkc", cmd
    code, out, err = run_cli(monkeypatch, capsys, *argv[1:], *TINY[cmd])
    assert code in (0, None), f"{cmd}: {err[-2000:]}"
    return out


def test_every_readme_command_runs(fresh, monkeypatch, capsys):
    commands = readme_commands()
    unknown = [c for c in commands if c not in TINY and c not in NOT_RUN]
    assert not unknown, f"README commands without a tiny size in this sweep: {unknown}"
    assert set(NOT_RUN) <= set(commands), "NOT_RUN lists a command the README no longer has"
    outs = {c: run_documented(c, monkeypatch, capsys) for c in commands if c in TINY}
    assert len((fresh / "data" / "train.test.jsonl").read_text().splitlines()) == 3
    for method in ("vanilla", "lightthinker", "h2o"):
        assert (fresh / "runs" / f"{method}.jsonl").is_file()
        assert method in outs["thinkc eval runs/vanilla.jsonl runs/lightthinker.jsonl runs/h2o.jsonl"]
    assert (fresh / "runs" / "demo" / "summary.json").is_file() and "shipped checkpoints" in outs["thinkc doctor"]


def command_path(words: list[str]) -> int:
    """How many of `words` name (sub)commands; the rest are arguments."""
    from thinkc.cli.main import app

    cmd, n = typer.main.get_command(app), 0
    while n < len(words) and words[n] in getattr(cmd, "commands", {}):
        cmd, n = cmd.commands[words[n]], n + 1
    return n


def test_every_listed_command_exists(fresh, monkeypatch, capsys):
    """The README's command list: each command has --help; an entry with arguments (`models prepare
    smollm2`) is run as it stands, on this fresh THINKC_HOME."""
    import shutil

    listed = listed_commands()
    assert ["data", "import"] in listed and ["bench", "batching"] in listed and len(listed) >= 15
    for words in listed:
        n = command_path(words)
        assert n >= 1, words
        code, out, err = run_cli(monkeypatch, capsys, *words[:n], "--help")
        assert code in (0, None) and f"thinkc {' '.join(words[:n])} [OPTIONS]" in out, (words, err)
        if n < len(words):
            code, out, err = run_cli(monkeypatch, capsys, *words)
            assert code in (0, None), (words, err)
    prepared = fresh.parent / "home" / "models" / "smollm2"
    assert (prepared / "model.safetensors").is_file()  # `thinkc models prepare smollm2` on the fresh home
    shutil.rmtree(prepared)  # 0.5 GB


def test_readme_python_api_runs(fresh, capsys):
    (api,) = [body for lang, body in code_blocks(readme()) if lang == "python"]
    assert "max_new_tokens=768" in api
    exec(compile(api.replace("max_new_tokens=768", "max_new_tokens=24"), "README.md", "exec"), {})
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert len(line.split()) == 4 and int(line.split()[1]) > 0  # answer, peak KV, compressions, wall time


def test_every_help_example_runs(fresh, monkeypatch, capsys):
    from thinkc.train import chain

    examples = help_examples(monkeypatch, capsys)
    assert "thinkc train tiny_sft --with-base" in examples
    unknown = [e for e in examples if e not in TINY]
    assert not unknown, f"--help examples without a tiny size in this sweep: {unknown}"
    plan = chain.plan
    monkeypatch.setattr(chain, "plan", lambda recipes, sets=(): plan(recipes, (*sets, *BASE_SETS)))
    outs = [run_documented(e, monkeypatch, capsys) for e in examples]
    for run in ("tiny-base", "tiny-base-2", "tiny-base-6", "tiny-sft"):  # --with-base trained the stage-1 chain
        assert (fresh / "runs" / run / "final" / "model.safetensors").is_file(), run
    assert outs[examples.index("thinkc train tiny_lightthinker --check")].rstrip().splitlines()[-1].startswith(
        "attention tiles computed")  # the base's tokenizer is there now: the full check ran
