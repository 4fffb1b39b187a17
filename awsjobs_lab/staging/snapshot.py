"""What a job's folder sends: its files, minus what never belongs in a job, with their hashes.

Pure file-system work (no AWS), meant to run in a thread. Skipped: `.git`, `node_modules`,
`.ipynb_checkpoints`, `__pycache__`, `.awsjobs` anywhere; this tool's by-products of earlier
jobs, named `<stem>.<job id>.<ext>` (logs, executed notebooks, rendered reports, a conflicting
output's copy: sent, each rerun would bring them back as outputs); whatever the folder's
`.awsjobsignore` matches (gitignore syntax, negation included, so `!name` there sends a
by-product anyway; an ignored folder is not entered, as in git); symlinks that lead outside the
server root (those inside are followed: the job sees the file they point to); FIFOs, sockets
and devices. Sizes are summed before a byte is read,
so an oversized folder is refused at once. Each file's SHA-256 is cached by (path, size,
mtime_ns) in `<server root>/.awsjobs/hash-cache.json`: re-running a job in a folder of 1 GB of
unchanged data reads none of it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pathspec

from ..errors import InvalidRequest
from ..patterns import JOB_ID_GLOB
from ..safeopen import open_regular

log = logging.getLogger(__name__)

ALWAYS_SKIPPED = frozenset(
    {".git", "node_modules", ".ipynb_checkpoints", "__pycache__", ".awsjobs"}
)
IGNORE_FILE = ".awsjobsignore"
# Earlier jobs' by-products beside their script (`<stem>.<job id>.<ext>`, see `runners.py`,
# `reports.py`, `requests.py`, `download.py`): a rule read before the folder's own lines.
BY_PRODUCTS_RULE = f"*.{JOB_ID_GLOB}.?*"
HASH_CACHE = Path(".awsjobs") / "hash-cache.json"
MAX_CACHE_ENTRIES = 100_000  # ~15 MB of JSON at most; the least recently used go first
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotEntry:
    path: str  # relative to the folder, '/'-separated: the key under the inputs prefix
    size: int
    mtime_ns: int
    sha256: str  # hex
    source: Path  # the regular file read (a symlink inside the server root, resolved)


@dataclass(frozen=True)
class Snapshot:
    folder: Path
    entries: tuple[SnapshotEntry, ...]  # sorted by path
    label: str = ""  # the folder as users see it: relative to the server root

    @property
    def name(self) -> str:
        return self.label or str(self.folder)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


def human_size(nbytes: int) -> str:
    """1536 → '1.5 KiB'."""
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class TooLarge(InvalidRequest):
    """A folder over the upload cap. The message names the total, the cap and the biggest
    files, so the user knows what to add to `.awsjobsignore`."""

    def __init__(self, folder: str, total: int, cap: int, biggest: list[tuple[str, int]]) -> None:
        self.total = total
        self.cap = cap
        self.biggest = biggest
        files = ", ".join(f"{path} ({human_size(size)})" for path, size in biggest)
        super().__init__(
            f"{folder} holds {human_size(total)} to upload, over the cap of {human_size(cap)} "
            f"(c.EC2Backend.s3_max_upload_mib). The biggest files: {files}. List what the job "
            f"does not need in {IGNORE_FILE} (gitignore syntax) in that folder."
        )


def check_size(folder: str, sizes: dict[str, int], cap: int) -> None:
    """Raise `TooLarge` when the files' total passes `cap` bytes."""
    total = sum(sizes.values())
    if total > cap:
        biggest = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:5]
        raise TooLarge(folder, total, cap, biggest)


def check_folder_size(folder: Path, server_root: Path, max_bytes: int) -> None:
    """Raise `TooLarge` when the files `folder` sends total over `max_bytes`, reading none of
    them: the check before a job is accepted (its snapshot is taken when it launches)."""
    _sent_files(folder, server_root, max_bytes)


def snapshot_folder(folder: Path, server_root: Path, *, max_bytes: int | None = None) -> Snapshot:
    """The files `folder` sends (see the module's docstring). With `max_bytes`, raises
    `TooLarge` before hashing anything when their total is over it."""
    label, found, root = _sent_files(folder, server_root, max_bytes)
    cache = HashCache(root / HASH_CACHE)
    entries = []
    for path in sorted(found):
        entry = _hashed_entry(path, found[path][0], root, cache)
        if entry is not None:
            entries.append(entry)
    cache.save()
    return Snapshot(folder, tuple(entries), label)


def _sent_files(
    folder: Path, server_root: Path, max_bytes: int | None
) -> tuple[str, dict[str, tuple[Path, os.stat_result]], Path]:
    """The folder's label, the files it sends (relative path → (file to read, its stat)) and
    the resolved server root. `InvalidRequest` unless it is a folder under the root;
    `TooLarge` when `max_bytes` is given and the files total over it."""
    root = server_root.resolve()
    real_folder = folder.resolve()
    if not real_folder.is_relative_to(root) or not real_folder.is_dir():
        raise InvalidRequest(f"{folder} is not a folder under the server root")
    label = "the server root" if real_folder == root else real_folder.relative_to(root).as_posix()
    found = dict(_walk(real_folder, root, _ignore_spec(real_folder, root)))
    if max_bytes is not None:
        check_size(label, {path: st.st_size for path, (_, st) in found.items()}, max_bytes)
    return label, found, root


def _ignore_spec(folder: Path, root: Path) -> pathspec.GitIgnoreSpec:
    """The by-products rule, then the folder's `.awsjobsignore` (a symlink to a file inside the
    root is followed)."""
    path = folder / IGNORE_FILE
    real = _followed(path, path.is_symlink(), root)
    lines: list[str] = []
    try:
        if real is not None:
            with os.fdopen(open_regular(real), encoding="utf-8", errors="replace") as f:
                lines = f.read(1 << 20).splitlines()
    except FileNotFoundError:
        pass
    except OSError as exc:  # not a regular file, unreadable: only the defaults apply
        log.warning("snapshot: %s not read: %s", path, exc)
    return pathspec.GitIgnoreSpec.from_lines([BY_PRODUCTS_RULE, *lines])


def _walk(
    directory: Path,
    root: Path,
    spec: pathspec.GitIgnoreSpec,
    rel: str = "",
    ancestors: frozenset[Path] = frozenset(),
) -> Iterator[tuple[str, tuple[Path, os.stat_result]]]:
    """(relative path, (regular file to read, its stat)) of every file sent under `directory`
    (a real path). `ancestors` guards against symlinked folders that loop."""
    ancestors = ancestors | {directory}
    try:
        children = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:  # unreadable or vanished: the job sees it no better
        log.debug("snapshot: skipping %s: %s", directory, exc)
        return
    for child in children:
        if child.name in ALWAYS_SKIPPED:
            continue
        child_rel = f"{rel}{child.name}"
        real = _followed(Path(child.path), child.is_symlink(), root)
        if real is None:
            continue
        try:
            st = os.stat(real)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if real not in ancestors and not spec.match_file(child_rel + "/"):
                yield from _walk(real, root, spec, child_rel + "/", ancestors)
        elif stat.S_ISREG(st.st_mode) and not spec.match_file(child_rel):
            yield child_rel, (real, st)


def _followed(path: Path, is_symlink: bool, root: Path) -> Path | None:
    """`path` itself, or the real path a symlink leads to when that is inside `root`."""
    if not is_symlink:
        return path
    real = Path(os.path.realpath(path))
    return real if real.is_relative_to(root) else None


def _hashed_entry(path: str, source: Path, root: Path, cache: HashCache) -> SnapshotEntry | None:
    """The entry of one file, its hash from the cache when size and mtime match. None when
    the file vanished or was replaced by something that is not a regular file meanwhile."""
    try:
        fd = open_regular(source)
    except OSError as exc:
        log.debug("snapshot: skipping %s: %s", source, exc)
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        cache_key = source.relative_to(root).as_posix()
        sha = cache.get(cache_key, st.st_size, st.st_mtime_ns)
        if sha is None:
            sha = sha256_of(f)
            cache.put(cache_key, st.st_size, st.st_mtime_ns, sha)
    return SnapshotEntry(path, st.st_size, st.st_mtime_ns, sha, source)


def sha256_of(f: BinaryIO) -> str:
    """The SHA-256 (hex) of what is left to read in `f`."""
    digest = hashlib.sha256()
    while chunk := f.read(READ_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """SHA-256 by (path under the server root, size, mtime_ns), kept in one JSON file.
    Best effort: an unreadable cache is empty, an unwritable one is not saved."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._entries = self._load()
        self._changed = False

    def _load(self) -> dict[str, list[object]]:
        try:
            fd = open_regular(self.file)
            with os.fdopen(fd, encoding="utf-8") as f:
                data = json.load(f)
            entries = data.get("entries", {}) if isinstance(data, dict) else {}
            return entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, path: str, size: int, mtime_ns: int) -> str | None:
        row = self._entries.get(path)
        if isinstance(row, list) and len(row) == 3 and row[0] == size and row[1] == mtime_ns:
            self._entries[path] = self._entries.pop(path)  # most recently used last
            self._changed = True
            return str(row[2])
        return None

    def put(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        self._entries.pop(path, None)
        self._entries[path] = [size, mtime_ns, sha256]
        self._changed = True

    def save(self) -> None:
        if not self._changed:
            return
        excess = len(self._entries) - MAX_CACHE_ENTRIES
        for path in list(self._entries)[: max(0, excess)]:
            del self._entries[path]
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".hash-cache.", dir=self.file.parent)
        except OSError as exc:
            log.warning("could not save the hash cache %s: %s", self.file, exc)
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "entries": self._entries}, f, separators=(",", ":"))
            os.replace(temp, self.file)  # atomic: a concurrent reader sees old or new
        except OSError as exc:
            Path(temp).unlink(missing_ok=True)
            log.warning("could not save the hash cache %s: %s", self.file, exc)
