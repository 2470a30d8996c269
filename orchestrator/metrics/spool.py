"""A bounded, crash-safe, append-only on-disk spool for batches VictoriaMetrics did not take.

Layout of the spool directory::

    spool/
      LOCK                 flock(2)'d by the process that owns the spool
      cursor               ack cursor: (segment, offset) of the first unacknowledged record
      000000000001.seg     segments, oldest first; only the newest one is appended to
      000000000002.seg

A segment starts with the 8-byte magic ``SGSPOOL1`` and holds records::

    offset  size  field
         0     4  magic b"SGR1"
         4     4  payload length (little endian u32)
         8     4  samples in the payload (u32), for accounting without decompressing
        12     4  CRC32 over bytes 4..12 and the payload
        16     n  payload: one gzip member of Prometheus text lines with timestamps

Durability guarantee: :meth:`Spool.append` returns after the record was written with one
``write(2)`` and ``fsync(2)``-ed (and, for a new segment, its directory entry too), so a
record it returned for survives a crash of the process *and* of the machine. A record being
written when the machine lost power may be torn: its CRC (or length, or magic) does not
match, the reader logs and counts it (:attr:`SpoolStats.torn_records`) and skips the rest of
that segment -- never fatal. A new process never appends to an old segment, so a torn tail
is always the end of a segment.

Delivery is at-least-once: the ack cursor is fsync'd after every :meth:`Spool.ack`, and a
crash between a successful POST and that fsync re-sends those records (identical samples:
VictoriaMetrics keeps both unless it runs with ``-dedup.minScrapeInterval``, which the
embedded one does). A segment is deleted only once the cursor passed all of its records.

Bounded: when an append would make the spool exceed ``max_bytes``, whole segments are
dropped oldest first; their unacknowledged records are counted in
:attr:`SpoolStats.dropped_samples` / ``dropped_records`` and logged.

The class is synchronous and thread-safe (one lock); async callers use
``asyncio.to_thread``. One process owns a directory at a time (``LOCK``).

Example::

    >>> import gzip, tempfile
    >>> with Spool(tempfile.mkdtemp(), max_bytes=1 << 20) as spool:
    ...     _ = spool.append(gzip.compress(b'up 1 1700000000000\\n'), samples=1)
    ...     records = spool.read()
    ...     spool.ack(records)
    ...     (len(records), records[0].samples, spool.is_empty())
    (1, 1, True)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from orchestrator.errors import MetricsError

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"SGSPOOL1"
RECORD_MAGIC = b"SGR1"
RECORD_HEADER = struct.Struct("<4sIII")  # magic, payload length, samples, crc32
CURSOR_MAGIC = b"SGC1"
CURSOR_FORMAT = struct.Struct("<4sQQI")  # magic, segment seq, offset, crc32
MAX_RECORD_BYTES = 256 << 20
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_SEGMENT_BYTES = 16 << 20
SEGMENT_SUFFIX = ".seg"


def record_crc(payload: bytes, samples: int) -> int:
    """CRC32 of a record: covers its length and sample count as well as the payload."""
    return zlib.crc32(payload, zlib.crc32(struct.pack("<II", len(payload), samples)))


def encode_record(payload: bytes, samples: int) -> bytes:
    """One record as stored in a segment.

    >>> len(encode_record(b"abc", 1)) == RECORD_HEADER.size + 3
    True
    """
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"record of {len(payload)} bytes is larger than {MAX_RECORD_BYTES}")
    crc = record_crc(payload, samples)
    return RECORD_HEADER.pack(RECORD_MAGIC, len(payload), samples, crc) + payload


def encode_cursor(seq: int, offset: int) -> bytes:
    body = struct.pack("<QQ", seq, offset)
    return CURSOR_FORMAT.pack(CURSOR_MAGIC, seq, offset, zlib.crc32(body))


def decode_cursor(data: bytes) -> tuple[int, int] | None:
    """``(segment, offset)``, or ``None`` for a missing, short or corrupt cursor file."""
    if len(data) != CURSOR_FORMAT.size:
        return None
    magic, seq, offset, crc = CURSOR_FORMAT.unpack(data)
    if magic != CURSOR_MAGIC or crc != zlib.crc32(struct.pack("<QQ", seq, offset)):
        return None
    return seq, offset


def segment_name(seq: int) -> str:
    return f"{seq:012d}{SEGMENT_SUFFIX}"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One batch read back from the spool: ``payload`` is what was appended."""

    seq: int  # segment
    offset: int  # of the record header in the segment
    end: int  # offset just past the record
    samples: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Cumulative counts for this process (a restart starts again at zero)."""

    appended_records: int
    appended_samples: int
    dropped_records: int
    dropped_samples: int
    torn_records: int
    size_bytes: int
    segments: int


class Spool:
    """See the module docstring. ``max_bytes`` bounds the sum of the segment file sizes;
    ``segment_bytes`` is capped at half of it; ``fsync=False`` gives up the crash guarantee
    for speed (benchmarks only)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> None:
        if max_bytes < 4096:
            raise ValueError("max_bytes must be at least 4096")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        # At least two segments fit, so dropping the oldest one always frees room.
        self.segment_bytes = max(1024, min(segment_bytes, max_bytes // 2))
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # seq -> file size, oldest first
        self._ends: dict[int, int] = {}  # seq -> offset of a torn record: the segment ends there
        self._active_seq: int | None = None
        self._active_fd: int | None = None
        self._cursor_fd: int | None = None
        self._cursor = (0, 0)
        self._appended_records = self._appended_samples = 0
        self._dropped_records = self._dropped_samples = self._torn = 0
        self._lock_fd: int | None = None
        self._open()

    # -- public API -------------------------------------------------------------------------

    def append(self, payload: bytes, samples: int) -> int:
        """Store one batch durably; returns how many samples were dropped to make room."""
        record = encode_record(payload, samples)
        with self._lock:
            self._check_open()
            if len(record) + len(SEGMENT_MAGIC) > self.segment_bytes:
                log.warning(
                    "spool %s: dropping a batch of %d samples larger than a segment",
                    self.directory,
                    samples,
                )
                self._dropped_records += 1
                self._dropped_samples += samples
                return samples
            dropped = self._make_room(len(record) + len(SEGMENT_MAGIC))
            fd, seq = self._active_for(len(record))
            start = self._sizes[seq]
            try:
                _write_all(fd, record)
                if self._fsync:
                    os.fsync(fd)
            except OSError:
                # Leave no torn record behind in a segment we keep appending to.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
            self._sizes[seq] = start + len(record)
            self._appended_records += 1
            self._appended_samples += samples
            return dropped

    def read(self, max_records: int = 1, max_bytes: int = 8 << 20) -> list[SpoolRecord]:
        """Up to ``max_records`` records from the ack cursor on, oldest first, not consumed.

        Stops at the end of a segment and before ``max_bytes`` of payload would be exceeded
        (one record is returned even if it is larger). Torn records are counted and skipped here.
        """
        out: list[SpoolRecord] = []
        with self._lock:
            self._check_open()
            self._skip_finished()
            seq, offset = self._cursor
            if seq not in self._sizes:
                return out
            end = self._segment_end(seq)
            total = 0
            with open(self.directory / segment_name(seq), "rb") as f:
                if f.read(len(SEGMENT_MAGIC)) != SEGMENT_MAGIC:
                    self._mark_torn(seq, len(SEGMENT_MAGIC), "not a spool segment")
                    return out
                f.seek(offset)
                while offset < end and len(out) < max_records:
                    record = self._read_record(f, seq, offset, end)
                    if record is None or (out and total + len(record.payload) > max_bytes):
                        break
                    out.append(record)
                    total += len(record.payload)
                    offset = record.end
        return out

    def ack(self, records: Sequence[SpoolRecord]) -> None:
        """Mark records returned by :meth:`read` as delivered (fsync'd cursor)."""
        if not records:
            return
        last = records[-1]
        with self._lock:
            self._check_open()
            if (last.seq, last.end) <= self._cursor:
                return  # already acked, or its segment was dropped meanwhile
            self._cursor = (last.seq, last.end)
            self._skip_finished()
            self._store_cursor()

    def is_empty(self) -> bool:
        """True when every stored record was acknowledged (or dropped)."""
        with self._lock:
            self._skip_finished()
            return self._cursor[0] not in self._sizes

    @property
    def size_bytes(self) -> int:
        """Bytes on disk in segment files (including acked records of the oldest one)."""
        with self._lock:
            return sum(self._sizes.values())

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                appended_records=self._appended_records,
                appended_samples=self._appended_samples,
                dropped_records=self._dropped_records,
                dropped_samples=self._dropped_samples,
                torn_records=self._torn,
                size_bytes=sum(self._sizes.values()),
                segments=len(self._sizes),
            )

    def segment_files(self) -> list[Path]:
        """The segment files, oldest first."""
        with self._lock:
            return [self.directory / segment_name(seq) for seq in self._sizes]

    def close(self) -> None:
        with self._lock:
            for fd in (self._active_fd, self._cursor_fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._active_fd = self._cursor_fd = self._lock_fd = None
            self._active_seq = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening ----------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise MetricsError(f"{self.directory}: cannot open the spool: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MetricsError(
                    f"{self.directory}: the spool is in use by another ServerGuard process"
                ) from exc
            raise MetricsError(f"{self.directory}: cannot lock the spool: {exc}") from exc
        for path in sorted(self.directory.glob("*" + SEGMENT_SUFFIX)):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            self._sizes[seq] = path.stat().st_size
        self._sizes = dict(sorted(self._sizes.items()))
        cursor_path = self.directory / "cursor"
        self._cursor_fd = os.open(cursor_path, os.O_RDWR | os.O_CREAT, 0o600)
        stored = decode_cursor(os.pread(self._cursor_fd, CURSOR_FORMAT.size + 1, 0))
        if stored is None and os.fstat(self._cursor_fd).st_size:
            log.warning(
                "spool %s: unreadable cursor, replaying from the oldest segment", self.directory
            )
        if stored is not None and stored[0] in self._sizes:
            self._cursor = (stored[0], max(stored[1], len(SEGMENT_MAGIC)))
        elif self._sizes:  # its segment is gone (fully acked or dropped): the oldest is next
            self._cursor = (next(iter(self._sizes)), len(SEGMENT_MAGIC))
        else:
            self._cursor = (stored[0] if stored else 0, len(SEGMENT_MAGIC))
        self._skip_finished()
        if self._sizes:
            log.info(
                "spool %s: %d segment(s), %d bytes to replay",
                self.directory,
                len(self._sizes),
                sum(self._sizes.values()),
            )

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise MetricsError(f"{self.directory}: the spool is closed")

    # -- writing ----------------------------------------------------------------------------

    def _active_for(self, record_len: int) -> tuple[int, int]:
        """The fd and seq of the segment to append to, rotating when it is full."""
        if (
            self._active_fd is not None
            and self._active_seq is not None
            and self._sizes[self._active_seq] + record_len > self.segment_bytes
            and self._sizes[self._active_seq] > len(SEGMENT_MAGIC)
        ):
            self._rotate()
        if self._active_fd is None or self._active_seq is None:
            # Sequence numbers only grow, also across restarts (the cursor remembers the last).
            seq = max(max(self._sizes, default=0), self._cursor[0]) + 1
            path = self.directory / segment_name(seq)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            _write_all(fd, SEGMENT_MAGIC)
            if self._fsync:
                os.fsync(fd)
                _fsync_dir(self.directory)
            self._active_fd, self._active_seq = fd, seq
            self._sizes[seq] = len(SEGMENT_MAGIC)
            if self._cursor[0] not in self._sizes:  # everything before was consumed
                self._cursor = (seq, len(SEGMENT_MAGIC))
        return self._active_fd, self._active_seq

    def _rotate(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active_fd = self._active_seq = None
        self._skip_finished()

    def _make_room(self, record_len: int) -> int:
        """Drop the oldest segments until ``record_len`` more bytes fit; samples dropped."""
        dropped = 0
        while self._sizes and sum(self._sizes.values()) + record_len > self.max_bytes:
            oldest = next(iter(self._sizes))
            if oldest == self._active_seq:
                self._rotate()
                if oldest not in self._sizes:
                    continue  # it was fully acked and is gone already
            start = self._cursor[1] if self._cursor[0] == oldest else len(SEGMENT_MAGIC)
            records, samples = self._count_records(oldest, start)
            self._delete_segment(oldest)
            self._dropped_records += records
            self._dropped_samples += samples
            dropped += samples
            log.warning(
                "spool %s full (%d bytes): dropped the oldest segment %s with %d unsent samples",
                self.directory,
                self.max_bytes,
                segment_name(oldest),
                samples,
            )
            if self._cursor[0] == oldest:
                nxt = next(iter(self._sizes), None)
                if nxt is not None:
                    self._cursor = (nxt, len(SEGMENT_MAGIC))
        return dropped

    def _delete_segment(self, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / segment_name(seq))
        self._sizes.pop(seq, None)
        self._ends.pop(seq, None)

    # -- reading ----------------------------------------------------------------------------

    def _segment_end(self, seq: int) -> int:
        return self._ends.get(seq, self._sizes[seq])

    def _skip_finished(self) -> None:
        """Delete segments the cursor has passed and move it on; a drained spool has none."""
        while True:
            seq, offset = self._cursor
            if seq not in self._sizes:
                later = [s for s in self._sizes if s > seq]
                if not later:
                    return
                self._cursor = (later[0], len(SEGMENT_MAGIC))
                continue
            if offset < self._segment_end(seq):
                return
            if seq == self._active_seq and self._active_fd is not None:
                os.close(self._active_fd)  # drained: the next append starts a new segment
                self._active_fd = self._active_seq = None
            self._delete_segment(seq)

    def _read_record(self, f: BinaryIO, seq: int, offset: int, end: int) -> SpoolRecord | None:
        header = f.read(RECORD_HEADER.size)
        problem = ""
        if len(header) < RECORD_HEADER.size:
            problem = "short header"
        else:
            magic, length, samples, crc = RECORD_HEADER.unpack(header)
            if magic != RECORD_MAGIC:
                problem = "bad magic"
            elif length > MAX_RECORD_BYTES or offset + RECORD_HEADER.size + length > end:
                problem = "length past the end of the segment"
            else:
                payload = f.read(length)
                if len(payload) < length:
                    problem = "short payload"
                elif record_crc(payload, samples) != crc:
                    problem = "CRC mismatch"
                else:
                    return SpoolRecord(
                        seq, offset, offset + RECORD_HEADER.size + length, samples, payload
                    )
        self._mark_torn(seq, offset, problem)
        return None

    def _mark_torn(self, seq: int, offset: int, problem: str) -> None:
        """A torn or corrupt record: nothing after it in this segment can be trusted."""
        self._torn += 1
        self._ends[seq] = offset
        if seq == self._active_seq and self._active_fd is not None:
            # Only a failed write can do this to our own segment: append elsewhere from now.
            os.close(self._active_fd)
            self._active_fd = self._active_seq = None
        log.warning(
            "spool %s: torn record in %s at offset %d (%s): skipping the rest of that segment",
            self.directory,
            segment_name(seq),
            offset,
            problem,
        )

    def _count_records(self, seq: int, start: int) -> tuple[int, int]:
        """Records and samples from ``start`` to the end of a segment (headers only)."""
        records = samples = 0
        end = self._segment_end(seq)
        try:
            with open(self.directory / segment_name(seq), "rb") as f:
                offset = start
                while offset + RECORD_HEADER.size <= end:
                    f.seek(offset)
                    magic, length, n, _ = RECORD_HEADER.unpack(f.read(RECORD_HEADER.size))
                    if magic != RECORD_MAGIC or offset + RECORD_HEADER.size + length > end:
                        break
                    records += 1
                    samples += n
                    offset += RECORD_HEADER.size + length
        except (OSError, struct.error):
            pass
        return records, samples

    def _store_cursor(self) -> None:
        if self._cursor_fd is None:
            return
        os.pwrite(self._cursor_fd, encode_cursor(*self._cursor), 0)
        if self._fsync:
            os.fdatasync(self._cursor_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
