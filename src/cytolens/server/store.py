"""Jobs and their state in one SQLite file (``<data-dir>/jobs.sqlite``); inputs and results on disk.

A job goes ``queued`` → ``running`` → ``done`` | ``failed``, or ``cancelled`` from queued or running.
Workers take jobs with :meth:`JobStore.claim` (one transaction: a job is never given to two workers)
and finish them only while they still hold them (:meth:`JobStore.finish` checks the state and the
attempt), so a job retried after its worker died is never written twice into the same files.

>>> import tempfile
>>> store = JobStore(Path(tempfile.mkdtemp()) / "jobs.sqlite")
>>> store.create("a" * 32, task="segment", model="nuclei", settings={}, inputs=["x.tif"])
>>> job = store.claim("w1"); job["id"] == "a" * 32, job["state"], job["attempts"]
(True, 'running', 1)
>>> store.requeue_running(max_attempts=2), store.get("a" * 32)["state"]
(1, 'queued')
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

__all__ = ["JOB_ID", "STATES", "JobStore"]

STATES = ("queued", "running", "done", "failed", "cancelled")
#: a job id: 32 lowercase hex digits (uuid4().hex); anything else never reaches the file system
JOB_ID = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
)"""


class JobStore:
    """The job table; every method opens its own connection, so threads and processes may share the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        job = dict(row)
        for key in ("settings", "inputs", "outputs"):
            job[key] = json.loads(job[key])
        return job

    def create(self, job_id: str, *, task: str, model: str, settings: dict, inputs: list[str]) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT INTO jobs (id, task, model, settings, inputs, state, created, updated) "
                       "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                       (job_id, task, model, json.dumps(settings), json.dumps(inputs), now, now))

    def get(self, job_id: str) -> dict | None:
        with self._connect() as db:
            return self._row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            found = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def claim(self, worker: str) -> dict | None:
        """The oldest queued job, now running on ``worker`` (its attempt counted); None when none is queued."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created LIMIT 1").fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, progress = 0, "
                       "updated = ? WHERE id = ?", (worker, time.time(), row["id"]))
            db.execute("COMMIT")
            return self._row(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
        finally:
            db.close()

    def _update_held(self, job_id: str, attempt: int, sql: str, values: tuple) -> bool:
        """Run ``UPDATE jobs SET <sql>`` only while the job is running this attempt; True when it was."""
        with self._connect() as db:
            cursor = db.execute(f"UPDATE jobs SET {sql}, updated = ? WHERE id = ? AND state = 'running' "
                                "AND attempts = ?", (*values, time.time(), job_id, attempt))
            return cursor.rowcount == 1

    def progress(self, job_id: str, attempt: int, fraction: float, message: str = "") -> bool:
        """Record progress; False when the job is no longer this attempt's (cancelled, or retried elsewhere)."""
        return self._update_held(job_id, attempt, "progress = ?, message = ?", (fraction, message))

    def finish(self, job_id: str, attempt: int, outputs: list[str], error: str | None = None) -> bool:
        return self._update_held(job_id, attempt, "state = 'done', progress = 1, message = '', outputs = ?, error = ?",
                                 (json.dumps(outputs), error))

    def fail(self, job_id: str, attempt: int, error: str) -> bool:
        return self._update_held(job_id, attempt, "state = 'failed', error = ?", (error,))

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued or running job; the job's state afterwards (None for an unknown job)."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET state = 'cancelled', updated = ? WHERE id = ? AND state IN "
                       "('queued', 'running')", (time.time(), job_id))
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row["state"]

    def requeue_running(self, worker: str | None = None, max_attempts: int = 3) -> int:
        """Jobs running on ``worker`` (every worker when None) go back to the queue, or fail after
        ``max_attempts`` attempts; how many were requeued."""
        where, values = ("state = 'running'", ()) if worker is None else ("state = 'running' AND worker = ?",
                                                                          (worker,))
        now = time.time()
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET state = 'failed', updated = ?, error = 'the worker running this job "
                       f"stopped ' || attempts || ' times; the job is not retried again (check the input "
                       f"images, or resubmit)' WHERE {where} AND attempts >= ?", (now, *values, max_attempts))
            cursor = db.execute(f"UPDATE jobs SET state = 'queued', worker = NULL, updated = ? WHERE {where}",
                                (now, *values))
            return cursor.rowcount
