"""Atomic writes and JSONL reading with line numbers. Every output file thinkc writes goes
through `atomic_write` (temp file in the same directory + fsync + rename): a killed job leaves
either the old file or the new one, never half of one.

The write path is strict on purpose: an existing target that is not a regular file (a folder,
FIFO, device or socket) is refused rather than replaced; a symlink is written through (its target
gets the new content, the link stays); the new file keeps the old file's permissions, or gets the
usual 0666-minus-umask of a new file; every error names the path the user gave, never the temp
file. `refuse_input_as_output` is the check commands make before they write anything."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from thinkc.errors import ThinkcError

# errors of a write that say the device, not the caller, failed (a full disk, a quota, I/O)
_DEVICE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temp file next to `path`; on clean exit fsync and rename it over `path`."""
    path = Path(path)
    target = _write_target(path)
    fd, tmp = _temp_beside(path, target)
    f = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
    try:
        try:
            yield f
        except OSError as e:  # the caller's write hit a full disk: name the output, not the temp file
            if e.filename is None and e.errno in _DEVICE_ERRNOS:
                raise _write_error(path, e) from None
            raise
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, target)
        except OSError as e:
            raise _write_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()  # closes the descriptor even when flushing what is left fails (disk full)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_target(path: Path) -> Path:
    """The file to replace: `path`, or what it links to. Refuses folders, FIFOs, devices and
    sockets (replacing them would silently turn them into plain files) and read-only files."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as e:
        raise _write_error(path, e) from None
    if stat.S_ISDIR(st.st_mode):
        raise ThinkcError(f"{path}: is a folder; give a file name to write")
    if not stat.S_ISREG(st.st_mode):
        kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                else "device")
        raise ThinkcError(f"{path}: is a {kind}, not a regular file; thinkc writes only regular files")
    if not os.access(target, os.W_OK):
        ro_fs = bool(os.statvfs(target.parent).f_flag & os.ST_RDONLY)
        why = "read-only file system" if ro_fs else "permission denied (the file is read-only)"
        raise ThinkcError(f"{path}: {why}")
    return target


def _temp_beside(path: Path, target: Path) -> tuple[int, str]:
    """(fd, name) of a temp file in the target's folder with the mode the output should get."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        where = e.filename or target.parent
        raise ThinkcError(f"{path}: cannot create the folder {where} ({e.strerror or e})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        os.fchmod(fd, _output_mode(target))
    except OSError:
        pass  # a filesystem without modes (vfat, some mounts): keep what it gives
    return fd, tmp


def _output_mode(target: Path) -> int:
    """The existing file's permission bits, else those of a new file (0666 minus the umask)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return new_file_mode()


def new_file_mode() -> int:
    """The permission bits a newly created file gets: 0666 minus the umask."""
    return 0o666 & ~_umask()


def follow_umask(folder: Path) -> None:
    """Give every file under `folder` a new file's mode (0666 minus the umask): libraries that save
    through a private temp file (safetensors under transformers' save_pretrained) leave 0600."""
    mode = new_file_mode()
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink():
            with contextlib.suppress(OSError):
                os.chmod(f, mode)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)  # no /proc: read it by setting it (and put it straight back)
    os.umask(old)
    return old


def _write_error(path: Path, e: OSError) -> ThinkcError:
    what = e.strerror or str(e)
    if e.errno in (errno.EACCES, errno.EPERM):
        what += " (cannot write in its folder)"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        what += "; nothing was written, the old file (if any) is unchanged"
    return ThinkcError(f"{path}: {what}")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links and ./ spellings included; also for paths that do
    not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_input_as_output(output: str | os.PathLike, inputs: Iterable, flag: str = "--output") -> None:
    """ThinkcError when `output` is one of `inputs` (None entries are skipped): writing it would
    destroy the input."""
    for src in inputs:
        if src is not None and same_file(output, src):
            raise ThinkcError(f"{output}: {flag} is the input file {src}; writing it would destroy the input "
                              f"(choose another {flag})")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def iter_jsonl(path: str | os.PathLike, tolerant: bool = False) -> Iterator[tuple[int, dict | None]]:
    """Yield (line_number, object) for each non-blank line. A line that is not a JSON object (or
    not UTF-8 text) raises ThinkcError naming the file and line, or, when `tolerant`, is yielded as
    (line_number, None) so the caller can count and skip it. A UTF-8 byte-order mark is accepted."""
    path = Path(path)
    if path.is_dir():
        raise ThinkcError(f"{path}: is a folder, not a JSONL file")
    if not path.is_file():
        raise ThinkcError(f"{path}: no such file")
    with open(path, "rb") as f:
        yield from iter_jsonl_lines(f, path, tolerant)


def iter_jsonl_lines(lines: Iterable[str | bytes], path, tolerant: bool = False) -> Iterator[tuple[int, dict | None]]:
    """(line_number, object) from lines of text or of UTF-8 bytes (see iter_jsonl)."""
    for lineno, line in enumerate(lines, 1):
        obj = None
        try:
            if isinstance(line, bytes):
                line = decode_utf8(line, path, lineno)
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ThinkcError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        except json.JSONDecodeError as e:
            if not tolerant:
                raise ThinkcError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            obj = None
        except ThinkcError:
            if not tolerant:
                raise
            obj = None
        yield lineno, obj


def decode_utf8(data: bytes, path, lineno: int | None = None) -> str:
    """`data` as text; ThinkcError naming the file and line (counted in `data` when `lineno` is
    None) for bytes that are not UTF-8, e.g. a Latin-1 or binary file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if lineno is None:
            lineno = data.count(b"\n", 0, e.start) + 1
        byte = data[e.start]
        raise ThinkcError(f"{path}:{lineno}: not UTF-8 text (byte 0x{byte:02x}); "
                          "save the file as UTF-8") from None


def read_parquet(path: str | os.PathLike) -> list[dict]:
    """Rows of a Parquet file as dicts (pyarrow is optional: a clear error without it)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ThinkcError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise ThinkcError(f"{path}: not a readable Parquet file ({first})") from None
