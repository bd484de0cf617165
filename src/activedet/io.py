"""Atomic file writes and safe reads shared by every step.

Every file the pipeline produces goes through these helpers: the content is
written to a temporary file in the destination folder and renamed over the
target, so a killed job never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(Exception):
    """Bad user input: the message names the file and the problem."""


# mkstemp's names: prefix, 8 characters of its alphabet, suffix (tempfile._RandomNameSequence).
_TMP_TAIL = r"\.[a-z0-9_]{8}\.tmp"


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """The hidden ``.<name>.<8 random>.tmp`` files that :func:`atomic_path` left next to ``path``.

    Only names of exactly the shape ``atomic_path`` creates match, so no user file is touched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}") + _TMP_TAIL)
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    A write killed mid-way (``kill -9``, a lost node) leaves its hidden temporary file behind; the next
    write of the same target (the step's next start) removes those first, so none lingers for DVC to hash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temp_files(path):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give results the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, ensure_ascii=False)
            f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_parquet(path: str | os.PathLike, what: str, columns: list[str], hint: str = ""):
    """A parquet table with the named columns, or an InputError naming the file and the problem."""
    import pandas as pd  # only the steps that read tables pay for pandas

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt or foreign file
        raise InputError(f"{path}: not a readable {what} (parquet): {str(e).splitlines()[0]}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: {what} lacks the columns {missing}{hint}")
    return df


def read_xml(path: str | os.PathLike, what: str, source: str):
    """Parsed XML root, refusing DTDs/entities (no entity expansion attacks); errors name the file.

    ``what`` names the file in the not-found message, ``source`` the producer whose files have no DTD.
    """
    import xml.etree.ElementTree as ET

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    raw = path.read_bytes()
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise InputError(f"{path}: XML with a DTD or entity declarations is refused ({source} have none)")
    try:
        return ET.fromstring(raw)
    except ET.ParseError as e:
        line, column = e.position
        raise InputError(f"{path}: malformed XML at line {line}, column {column}") from None


# Files a writer of fixed names (the annotation package) has written into a folder it does not own alone.
OWNED_MANIFEST = ".activedet-files.json"


def check_not_foreign(folder: str | os.PathLike, names: list[str], what: str) -> None:
    """Refuse to write ``names`` into ``folder`` where one of them exists and activedet did not write it.

    activedet's writers record what they wrote in ``folder/.activedet-files.json``
    (:func:`record_written`); a file of one of ``names`` that the record does not list is a
    user's, and is never overwritten. Raises InputError naming the files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    try:
        ours = set(json.loads((folder / OWNED_MANIFEST).read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError, AttributeError):
        ours = set()
    foreign = [n for n in names if (folder / n).exists() and n not in ours]
    if foreign:
        raise InputError(f"{folder}: holds {', '.join(foreign)}, not written by activedet; refusing to overwrite "
                         f"them with {what}: choose an empty or new folder")


def record_written(folder: str | os.PathLike, names: list[str]) -> None:
    """Add ``names`` to ``folder``'s record of the files activedet wrote (see :func:`check_not_foreign`)."""
    folder = Path(folder)
    path = folder / OWNED_MANIFEST
    try:
        ours = set(json.loads(path.read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError, AttributeError):
        ours = set()
    write_json(path, {"files": sorted(ours | set(names))})
