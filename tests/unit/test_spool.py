"""The disk spool on its own: record format, cursor, rotation, torn records, limits, lock."""

from __future__ import annotations

import doctest
import gzip
import importlib
import os
from pathlib import Path

import pytest

from orchestrator.errors import MetricsError
from orchestrator.metrics.spool import (
    CURSOR_FORMAT,
    RECORD_HEADER,
    SEGMENT_MAGIC,
    Spool,
    decode_cursor,
    encode_cursor,
    encode_record,
)


def payload(i: int, size: int = 0) -> bytes:
    """A recognisable batch: gzip of one line (plus filler so sizes are predictable)."""
    line = f'm{{i="{i}"}} {i} {1_700_000_000_000 + i}\n' + "#" * size
    return gzip.compress(line.encode(), compresslevel=0, mtime=0)


def ids(records: list) -> list[int]:
    return [int(gzip.decompress(r.payload).split(b" ")[1]) for r in records]


def drain(spool: Spool) -> list[int]:
    out: list[int] = []
    while records := spool.read(max_records=7):
        out += ids(records)
        spool.ack(records)
    return out


# -- format ------------------------------------------------------------------------------------


def test_record_layout_and_crc_covers_every_field() -> None:
    rec = encode_record(b"hello", 3)
    magic, length, samples, _crc = RECORD_HEADER.unpack(rec[: RECORD_HEADER.size])
    assert (magic, length, samples, rec[RECORD_HEADER.size :]) == (b"SGR1", 5, 3, b"hello")
    # Any change in length, count or payload changes the CRC.
    assert encode_record(b"hellp", 3)[12:16] != rec[12:16]
    assert encode_record(b"hello", 4)[12:16] != rec[12:16]


def test_cursor_roundtrip_and_corruption() -> None:
    data = encode_cursor(7, 4096)
    assert len(data) == CURSOR_FORMAT.size
    assert decode_cursor(data) == (7, 4096)
    assert decode_cursor(data[:-1]) is None
    assert decode_cursor(b"\0" * CURSOR_FORMAT.size) is None
    flipped = bytearray(data)
    flipped[6] ^= 1
    assert decode_cursor(bytes(flipped)) is None


def test_segment_file_layout(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(b"abc", 2)
        (seg,) = spool.segment_files()
    assert seg.name == "000000000001.seg"
    assert seg.read_bytes() == SEGMENT_MAGIC + encode_record(b"abc", 2)


# -- reading, acking, cursor -----------------------------------------------------------------


def test_oldest_first_and_read_does_not_consume(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(5):
            spool.append(payload(i), 1)
        assert ids(spool.read(max_records=3)) == [0, 1, 2]
        assert ids(spool.read(max_records=3)) == [0, 1, 2]  # not acked: same again
        spool.ack(spool.read(max_records=2))
        assert ids(spool.read(max_records=10)) == [2, 3, 4]
        assert not spool.is_empty()


def test_read_respects_max_bytes_but_returns_at_least_one(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append(payload(i, size=1000), 1)
        assert len(spool.read(max_records=10, max_bytes=10)) == 1
        assert len(spool.read(max_records=10, max_bytes=2100)) == 2


def test_cursor_survives_reopen(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(6):
            spool.append(payload(i), 1)
        spool.ack(spool.read(max_records=4))
    with Spool(tmp_path) as spool:
        assert drain(spool) == [4, 5]
        assert spool.is_empty()


def test_unacked_records_are_read_again_after_reopen(tmp_path: Path) -> None:
    """At-least-once: what was read but not acked comes back."""
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append(payload(i), 1)
        spool.read(max_records=3)
    with Spool(tmp_path) as spool:
        assert drain(spool) == [0, 1, 2]


def test_corrupt_cursor_replays_from_the_oldest_segment(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(4):
            spool.append(payload(i), 1)
        spool.ack(spool.read(max_records=2))
    (tmp_path / "cursor").write_bytes(b"garbage")
    with Spool(tmp_path) as spool:
        assert drain(spool) == [0, 1, 2, 3]


def test_drained_spool_leaves_no_segment_and_numbering_goes_on(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(payload(0), 1)
        drain(spool)
        assert spool.is_empty()
        assert spool.segment_files() == []
        assert spool.size_bytes == 0
    with Spool(tmp_path) as spool:
        spool.append(payload(1), 1)
        assert [p.name for p in spool.segment_files()] == ["000000000002.seg"]
        assert drain(spool) == [1]


def test_a_new_process_appends_to_a_new_segment(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(payload(0), 1)
    with Spool(tmp_path) as spool:
        spool.append(payload(1), 1)
        assert [p.name for p in spool.segment_files()] == ["000000000001.seg", "000000000002.seg"]
        assert drain(spool) == [0, 1]


# -- rotation and limits -----------------------------------------------------------------------


def test_rotation_keeps_order_and_deletes_acked_segments(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2048) as spool:
        for i in range(40):
            spool.append(payload(i, size=200), 1)
        files = spool.segment_files()
        assert len(files) > 3
        assert all(f.stat().st_size <= 2048 for f in files)
        first = spool.read(max_records=1000)
        assert all(r.seq == first[0].seq for r in first)  # a read stops at a segment's end
        spool.ack(first)
        assert not files[0].exists()
        assert [0, *range(len(first), 40)] == [0, *drain(spool)]
        assert spool.segment_files() == []


def test_full_spool_drops_whole_oldest_segments_and_keeps_the_newest(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=8192, segment_bytes=2048) as spool:
        dropped = 0
        for i in range(100):
            dropped += spool.append(payload(i, size=200), samples=10)
            assert spool.size_bytes <= 8192
        stats = spool.stats()
        assert stats.dropped_samples == dropped > 0
        kept = drain(spool)
    assert kept == list(range(100 - len(kept), 100))  # a contiguous run of the newest
    assert stats.dropped_records == 100 - len(kept)
    assert stats.dropped_samples == 10 * (100 - len(kept))


def test_drop_counts_only_unacked_records_of_the_oldest_segment(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=8192, segment_bytes=2048) as spool:
        i = 0
        while len(spool.segment_files()) < 2:
            spool.append(payload(i, size=200), samples=1)
            i += 1
        in_first = i - 1  # the last append opened the second segment
        spool.ack(spool.read(max_records=2))
        while spool.stats().dropped_records == 0:
            spool.append(payload(i, size=200), samples=1)
            i += 1
        assert spool.stats().dropped_records == in_first - 2
        assert drain(spool)[0] == in_first  # the first record of the second segment


def test_batch_larger_than_a_segment_is_dropped_and_counted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=8192, segment_bytes=2048) as spool:
        assert spool.append(os.urandom(4000), samples=5) == 5
        assert spool.stats().dropped_samples == 5
        assert spool.is_empty()


# -- crashes -----------------------------------------------------------------------------------


def fill(tmp_path: Path, n: int) -> Path:
    with Spool(tmp_path) as spool:
        for i in range(n):
            spool.append(payload(i), 1)
        (seg,) = spool.segment_files()
    return seg


@pytest.mark.parametrize("cut", [3, RECORD_HEADER.size, RECORD_HEADER.size + 5])
def test_torn_last_record_is_skipped_and_counted(tmp_path: Path, cut: int) -> None:
    seg = fill(tmp_path, 3)
    with open(seg, "ab") as f:
        f.write(encode_record(payload(3), 1)[:cut])
    with Spool(tmp_path) as spool:
        spool.append(payload(4), 1)  # a new process writes to a new segment
        assert drain(spool) == [0, 1, 2, 4]
        assert spool.stats().torn_records == 1
        assert spool.is_empty()
        assert not seg.exists()


def test_zero_filled_tail_is_torn_not_an_empty_record(tmp_path: Path) -> None:
    """ext4 may leave zeros after a power loss; crc32(b"") == 0 must not make that valid."""
    seg = fill(tmp_path, 2)
    with open(seg, "ab") as f:
        f.write(b"\0" * 64)
    with Spool(tmp_path) as spool:
        assert drain(spool) == [0, 1]
        assert spool.stats().torn_records == 1


def test_flipped_bit_in_a_payload_is_detected(tmp_path: Path) -> None:
    seg = fill(tmp_path, 3)
    data = bytearray(seg.read_bytes())
    data[-5] ^= 0x10  # inside the last record's payload
    seg.write_bytes(bytes(data))
    with Spool(tmp_path) as spool:
        assert drain(spool) == [0, 1]
        assert spool.stats().torn_records == 1


def test_empty_or_headerless_segment_left_by_a_crash(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    (tmp_path / "000000000002.seg").write_bytes(b"SGS")  # crash while creating a segment
    with Spool(tmp_path) as spool:
        spool.append(payload(1), 1)
        assert drain(spool) == [0, 1]
        assert spool.segment_files() == []


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    with Spool(tmp_path), pytest.raises(MetricsError, match="in use by another"):
        Spool(tmp_path)
    Spool(tmp_path).close()  # released on close (and by the kernel when a process dies)


def test_closed_spool_refuses_work(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close()
    with pytest.raises(MetricsError, match="closed"):
        spool.append(b"x", 1)


@pytest.mark.parametrize("module", ["spool", "transport", "selfmetrics"])
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(f"orchestrator.metrics.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
