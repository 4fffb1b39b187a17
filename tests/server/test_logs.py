"""logs: offset reads with a byte cap, cut on UTF-8 boundaries, never the whole file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from awsjobs_lab.logs import read_chunk, read_log


def test_incremental_reads(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"line 1\nline 2\n")
    first = read_chunk(log, 0, 7)
    assert (first.content, first.offset, first.next_offset, first.size, first.eof) == (
        "line 1\n",
        0,
        7,
        14,
        False,
    )
    second = read_chunk(log, first.next_offset, 100)
    assert (second.content, second.next_offset, second.eof) == ("line 2\n", 14, True)
    with log.open("ab") as f:
        f.write(b"line 3\n")
    third = read_chunk(log, second.next_offset, 100)
    assert (third.content, third.next_offset, third.size, third.eof) == ("line 3\n", 21, 21, True)


def test_a_chunk_as_json_has_every_field(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes("é\n".encode())
    chunk = read_chunk(log, 0, 100)
    assert chunk.to_dict() == dataclasses.asdict(chunk)  # a field added is never left out
    assert chunk.to_dict()["content"] == "é\n"


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    chunk = read_chunk(tmp_path / "nope.log", 0, 100)
    assert (chunk.content, chunk.next_offset, chunk.size, chunk.eof) == ("", 0, 0, True)


def test_offset_past_the_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"abc")
    chunk = read_chunk(log, 10, 100)
    assert (chunk.content, chunk.offset, chunk.next_offset, chunk.size, chunk.eof) == (
        "",
        10,
        10,
        3,
        True,
    )


def test_cap_does_not_split_a_character(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    text = "aé€😀z"  # 1, 2, 3, 4, 1 bytes
    log.write_text(text, encoding="utf-8")
    out, offset = "", 0
    for _ in range(50):
        chunk = read_chunk(log, offset, 4)
        assert "\ufffd" not in chunk.content
        out += chunk.content
        offset = chunk.next_offset
        if chunk.eof:
            break
    assert out == text


def test_character_still_being_written_waits(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"ok " + "€".encode()[:2])
    chunk = read_chunk(log, 0, 100)
    assert (chunk.content, chunk.next_offset, chunk.eof) == ("ok ", 3, False)
    # Only the partial character is left: nothing to return yet, no U+FFFD.
    again = read_chunk(log, 3, 100)
    assert (again.content, again.next_offset, again.eof) == ("", 3, False)
    # Once the job has ended, the partial bytes are final: replaced, and the read completes.
    final = read_chunk(log, 3, 100, final=True)
    assert (final.content, final.next_offset, final.eof) == ("\ufffd", 5, True)


def test_invalid_bytes_become_replacement_characters(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"a\xff\xfeb\n")
    chunk = read_chunk(log, 0, 100)
    assert chunk.content == "a\ufffd\ufffdb\n"
    assert chunk.eof


def test_tiny_cap_still_makes_progress(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("€€", encoding="utf-8")
    chunk = read_chunk(log, 0, 1)
    assert chunk.next_offset == 1  # a lone lead byte: U+FFFD rather than no progress


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        read_chunk(tmp_path / "x", -1, 10)
    with pytest.raises(ValueError):
        read_chunk(tmp_path / "x", 0, 0)


async def test_huge_sparse_log_reads_only_the_chunk(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse
        f.seek((1 << 30) - 6)
        f.write(b"tail!\n")
    chunk = await read_log(log, (1 << 30) - 6, 262144)
    assert chunk.content == "tail!\n"
    assert chunk.eof and chunk.size == 1 << 30
    head = await read_log(log, 0, 1024)
    assert head.next_offset == 1024 and not head.eof
