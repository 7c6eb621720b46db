"""Bad inputs and faults (issue 12): each gives exit code 2 and one line naming the problem, no
traceback, and leaves the input byte-identical. The write path (thinkc.io.atomic_write) is
checked directly: symlinks, FIFOs, folders, modes, read-only and full-disk targets."""
import errno
import json
import os
import stat
import sys

import pytest

from _cli import run_cli
from thinkc.cli.main import _one_line, main
from thinkc.errors import ThinkcError
from thinkc.io import atomic_write, iter_jsonl, read_parquet, write_jsonl

GOOD = {"id": "a", "question": "1+1?", "thinking": "1+1 is 2.", "answer": "\\boxed{2}"}
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one logical line stays one printed line


def run_main(monkeypatch, capsys, *args):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    return code, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


def records_file(tmp_path, name="in.jsonl", n=2):
    path = tmp_path / name
    path.write_text("".join(json.dumps({**GOOD, "id": f"r{i}"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


# --- the write path -------------------------------------------------------------------------

def test_symlink_is_written_through(tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    write_jsonl(link, [{"x": 1}])
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == '{"x": 1}\n'


def test_fifo_target_is_refused_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ThinkcError, match=r"pipe: is a FIFO, not a regular file"):
        write_jsonl(fifo, [{"x": 1}])
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]  # no temp file left behind


def test_folder_target_names_the_users_path_not_a_temp_file(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ThinkcError) as e:
        write_jsonl(tmp_path / "out", [{"x": 1}])
    assert str(e.value) == f"{tmp_path / 'out'}: is a folder; give a file name to write"


def test_existing_mode_is_kept_and_new_files_follow_the_umask(tmp_path):
    old = tmp_path / "kept.jsonl"
    old.write_text("x\n")
    os.chmod(old, 0o640)
    write_jsonl(old, [{"x": 1}])
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o640
    mask = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "new.jsonl", [{"x": 1}])
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.jsonl").st_mode) == 0o644  # not mkstemp's 0600


@pytest.mark.skipif(ROOT, reason="root may write anywhere")
def test_read_only_folder_names_the_users_path(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        with pytest.raises(ThinkcError) as e:
            write_jsonl(ro / "o.jsonl", [{"x": 1}])
    finally:
        os.chmod(ro, 0o755)
    assert str(e.value).startswith(f"{ro / 'o.jsonl'}: ") and ".tmp" not in str(e.value)


@pytest.mark.skipif(ROOT, reason="root may write anywhere")
def test_read_only_file_is_not_replaced(tmp_path):
    path = tmp_path / "ro.jsonl"
    path.write_text("keep\n")
    os.chmod(path, 0o444)
    with pytest.raises(ThinkcError, match="read-only"):
        write_jsonl(path, [{"x": 1}])
    assert path.read_text() == "keep\n"


@pytest.mark.parametrize("where", ["fsync", "body"])
def test_full_disk_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch, where):
    path = tmp_path / "o.jsonl"
    path.write_text("old\n")
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(full))
    with pytest.raises(ThinkcError) as e:
        with atomic_write(path) as f:
            f.write("new\n")
            if where == "body":
                raise full
    assert str(e.value).startswith(f"{path}: No space left on device") and ".tmp" not in str(e.value)
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["o.jsonl"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root only): a real full disk, and a real read-only file system."""
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not ROOT or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                  capture_output=True).returncode:
        pytest.skip("needs root and tmpfs mounts")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_real_full_disk_and_read_only_mount(tiny_tmpfs):
    import subprocess

    path = tiny_tmpfs / "o.jsonl"
    write_jsonl(path, [{"x": 1}])
    with pytest.raises(ThinkcError, match=f"^{path}: No space left on device; nothing was written"):
        write_jsonl(path, [{"x": "y" * 1000}] * 200)
    assert path.read_text() == '{"x": 1}\n' and os.listdir(tiny_tmpfs) == ["o.jsonl"]
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    with pytest.raises(ThinkcError, match=f"^{path}: read-only file system$"):
        write_jsonl(path, [{"x": 2}])
    with pytest.raises(ThinkcError, match=f"^{tiny_tmpfs / 'new.jsonl'}: Read-only file system$"):
        write_jsonl(tiny_tmpfs / "new.jsonl", [{"x": 2}])


# --- readers: encodings and fake files ------------------------------------------------------

def test_latin1_line_is_named(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\n" + '{"q": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ThinkcError, match=r"l\.jsonl:3: not UTF-8 text \(byte 0xe9\)"):
        list(iter_jsonl(path))
    assert [obj for _, obj in iter_jsonl(path, tolerant=True)] == [GOOD, None]  # skippable


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert list(iter_jsonl(path)) == [(1, GOOD)]


def test_fake_parquet_is_one_clear_error(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet\n")
    with pytest.raises(ThinkcError, match=r"fake\.parquet: not a readable Parquet file"):
        read_parquet(path)


@pytest.mark.parametrize("content", [b"\x7fELF\x02\x01\x01\x00\xff\xfe\n", b'[\n{"a": 1},\n{"b": "\xe9"}\n]\n'])
def test_binary_or_latin1_import_is_one_line(tmp_path, monkeypatch, capsys, content):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(content)
    code, err = run_main(monkeypatch, capsys, "data", "import", src, "-o", tmp_path / "o.jsonl")
    line = one_error_line(err)
    assert code == 2 and f"{src}:" in line and "not UTF-8 text" in line
    assert src.read_bytes() == content and not (tmp_path / "o.jsonl").exists()


def test_unnamed_decode_error_still_prints_one_line():
    e = UnicodeDecodeError("utf-8", b"ab\xe9", 2, 3, "invalid continuation byte")
    assert _one_line(e) == "an input file is not UTF-8 text (byte 0xe9); save it as UTF-8"


# --- output == input ------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["data", "export", "{src}", "-o", "{src}"],
                                 ["data", "import", "{src}", "-o", "{src}"],
                                 ["data", "cts", "-i", "{src}", "-o", "{tmp}/in.r{{ratio}}.jsonl", "-r", "0.5",
                                  "-m", "tiny-sft"],
                                 ["eval", "{src}", "--json", "{src}"]])
def test_output_equal_to_input_is_refused(tmp_path, monkeypatch, capsys, cmd):
    src = records_file(tmp_path, "in.r0.5.jsonl" if "cts" in cmd else "in.jsonl")
    before = src.read_bytes()
    args = [a.format(src=src, tmp=tmp_path) for a in cmd]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and "is the input file" in one_error_line(err)
    assert src.read_bytes() == before


def test_synth_test_output_equal_to_output_is_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.jsonl"
    code, err = run_main(monkeypatch, capsys, "data", "synth", "-o", out, "-n", "10", "--n-test", "5",
                         "--test-output", tmp_path / "." / "s.jsonl")
    assert code == 2 and "--test-output is also --output" in one_error_line(err)
    assert not out.exists()


# --- validation before work -----------------------------------------------------------------

@pytest.mark.parametrize("flags, says", [(["--batch-size", "0"], "--batch-size 0: must be at least 1"),
                                         (["--chunk-size", "-2"], "--chunk-size -2: must be at least 1"),
                                         (["--device", "tpu"], "unknown device 'tpu'")])
def test_cts_bad_settings_fail_before_any_folder(tmp_path, monkeypatch, capsys, flags, says):
    src = records_file(tmp_path)
    code, err = run_main(monkeypatch, capsys, "data", "cts", "-i", src, "-o", tmp_path / "out" / "c.jsonl",
                         "-m", "tiny-sft", *flags)
    assert code == 2 and says in one_error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model_type, arch", [("gpt2", "GPT2LMHeadModel"), ("bert", "BertForMaskedLM")])
def test_wrong_architecture_is_refused(tmp_path, model_type, arch):
    from thinkc.models.loading import load_model

    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": [arch]}))
    with pytest.raises(ThinkcError, match=f"a {model_type} \\({arch}\\) model; thinkc works with Qwen2"):
        load_model(tmp_path)


def test_corrupt_safetensors_is_one_clear_error(tmp_path):
    from thinkc.models.loading import CHECKPOINTS, load_model

    src = CHECKPOINTS / "tiny-sft"
    if not (src / "model.safetensors").is_file():
        pytest.skip("shipped checkpoint not in this install")
    (tmp_path / "config.json").write_bytes((src / "config.json").read_bytes())
    (tmp_path / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[:4096])
    with pytest.raises(ThinkcError, match="cannot load the model"):
        load_model(tmp_path)


# --- the error printer ----------------------------------------------------------------------

def test_markup_in_messages_is_printed_as_written(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "[o] and [/b].jsonl"
    code, err = run_main(monkeypatch, capsys, "data", "stats", missing)
    assert code == 2 and one_error_line(err) == f"error: {missing}: no such file"


def test_debug_is_accepted_after_the_subcommand(tmp_path, monkeypatch):
    missing = tmp_path / "none.jsonl"
    monkeypatch.setattr(sys, "argv", ["thinkc", "data", "stats", str(missing), "--debug"])
    with pytest.raises(ThinkcError, match="no such file"):  # the traceback, not exit 2
        main()


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: call something on load
        return (print, ("loaded",))


def test_refused_pickle_weights_are_one_clear_error(tmp_path, capsys):
    import torch

    from thinkc.models.loading import load_model

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                                                      "vocab_size": 32, "hidden_size": 8, "num_hidden_layers": 1,
                                                      "num_attention_heads": 2, "num_key_value_heads": 1,
                                                      "intermediate_size": 16}))
    torch.save({"w": _Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ThinkcError, match="cannot load the model") as e:
        load_model(tmp_path)
    assert "loaded" not in capsys.readouterr().out  # the payload never ran
    assert "\x1b[" not in str(e.value) and len(str(e.value).splitlines()) == 1


def test_warning_printer_keeps_token_names(capsys):
    from thinkc.console import print_warning

    print_warning("gist tokens [o] <w> were never trained; pass --allow-untrained-gist [/]")
    err = capsys.readouterr().err
    assert err.strip() == "warning: gist tokens [o] <w> were never trained; pass --allow-untrained-gist [/]"


def test_folder_as_input_is_named(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, "data", "export", tmp_path, "-o", tmp_path / "o.jsonl")
    assert code == 2 and one_error_line(err) == f"error: {tmp_path}: is a folder, not a JSONL file"
