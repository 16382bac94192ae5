"""The meter's history in SQLite: every reading with its status, and the last good value after a restart.

One table, ``readings(time, value, status, raw, confidence)``; ``value`` is NULL for a reading that
was not published. SQLite commits are atomic, so a power cut loses at most the reading being
written, never the file. Rows beyond ``max_rows`` are pruned, oldest first.

Thread safety: every method takes the instance's lock; one :class:`History` may be shared by the
reader's thread and the web page's.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["History"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    time REAL NOT NULL,
    value REAL,
    status TEXT NOT NULL,
    raw TEXT NOT NULL,
    confidence REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_time ON readings (time);
"""


class History:
    """Readings kept in an SQLite file (``":memory:"`` for none).

    Args:
        path: The database file (created with its folder when missing).
        max_rows: Rows kept; older ones are pruned (about 10 years at one reading a minute by default).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_rows: int = 5_000_000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._added = 0

    def add(self, time: float, value: float | None, status: str, raw: str, confidence: float) -> None:
        """Appends one reading (committed before it returns)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO readings (time, value, status, raw, confidence) VALUES (?, ?, ?, ?, ?)",
                (time, value, status, raw, confidence),
            )
            self._added += 1
            if self._added % 1000 == 0:
                self._db.execute(
                    "DELETE FROM readings WHERE rowid <= (SELECT MAX(rowid) FROM readings) - ?", (self.max_rows,)
                )

    def last_good(self) -> tuple[float, float] | None:
        """``(value, time)`` of the last published reading, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT value, time FROM readings WHERE status = 'ok' ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    def recent(self, limit: int = 500, *, published_only: bool = False) -> list[dict[str, Any]]:
        """The last ``limit`` readings, oldest first, as dicts."""
        where = "WHERE status = 'ok'" if published_only else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT time, value, status, raw, confidence FROM readings {where} ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"time": t, "value": v, "status": s, "raw": r, "confidence": round(c, 4)} for t, v, s, r, c in rows[::-1]
        ]

    def to_csv(self) -> str:
        """Every reading as CSV (``time,value,status,raw,confidence``)."""
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["time", "value", "status", "raw", "confidence"])
        with self._lock:
            for row in self._db.execute("SELECT time, value, status, raw, confidence FROM readings ORDER BY rowid"):
                w.writerow(row)
        return out.getvalue()

    def close(self) -> None:
        """Closes the database; safe to call twice."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
