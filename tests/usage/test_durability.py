"""Durability: a writer process killed with SIGKILL mid-load loses no acknowledged event.

The child records events (sync from 8 threads, or ``arecord`` from 32 asyncio tasks) and prints each
request_id only after ``record``/``arecord`` returned — that print is the "response reached the caller".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import llm_connect.usage
from llm_connect.usage import Ledger

SRC = str(Path(llm_connect.usage.__file__).resolve().parents[2])

CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading
    from datetime import datetime, timezone
    from decimal import Decimal
    from llm_connect.usage import Ledger, UsageEvent

    target, mode, table = sys.argv[1], sys.argv[2], sys.argv[3]
    ledger = Ledger.open(target, table=table)
    lock = threading.Lock()

    def ev(rid):
        return UsageEvent(request_id=rid, timestamp=datetime.now(timezone.utc), provider="fake", model="m",
                          tenant_id="t", input_tokens=3, output_tokens=1, total_tokens=4, cost_usd=Decimal("0.001"))

    def ack(rid):
        with lock:
            sys.stdout.write(rid + "\\n")
            sys.stdout.flush()

    if mode == "threads":
        def work(t):
            i = 0
            while True:
                rid = f"t{t}-{i}"
                ledger.record(ev(rid))
                ack(rid)
                i += 1
        for t in range(8):
            threading.Thread(target=work, args=(t,), daemon=True).start()
        threading.Event().wait()
    else:
        async def worker(t):
            i = 0
            while True:
                rid = f"a{t}-{i}"
                await ledger.arecord(ev(rid))
                ack(rid)
                i += 1
        async def main():
            await asyncio.gather(*(worker(t) for t in range(32)))
        asyncio.run(main())
    """
)


def _run_and_kill(tmp_path: Path, target: str, mode: str, table: str, min_acks: int = 1000) -> set[str]:
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(script), target, mode, table], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    acked: set[str] = set()
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acked) < min_acks:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early: {proc.stderr.read().decode()[-2000:]}")
            acked.add(line.decode().strip())
            if time.monotonic() > deadline:
                raise AssertionError("writer too slow")
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: commits are in flight
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    for raw in rest.decode().split("\n")[:-1]:  # ids printed before the kill; a cut last line is ignored
        acked.add(raw.strip())
    assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("mode", ["threads", "async"])
def test_sqlite_acknowledged_events_survive_kill_9(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "usage.sqlite3"
    acked = _run_and_kill(tmp_path, str(db), mode, "llm_usage")
    ledger = Ledger.open(db)
    stored = {e.request_id for e in ledger.query()}
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert len(stored) >= len(acked) >= 1000
    (row,) = ledger.totals("tenant")
    assert row["requests"] == len(stored) and row["input_tokens"] == 3 * len(stored)


@pytest.mark.parametrize("mode", ["threads", "async"])
def test_postgres_acknowledged_events_survive_kill_9(tmp_path: Path, pg_url: str, mode: str) -> None:
    table = f"t_usage_kill_{uuid.uuid4().hex[:10]}"
    try:
        acked = _run_and_kill(tmp_path, pg_url, mode, table)
        ledger = Ledger.open(pg_url, table=table)
        stored = {e.request_id for e in ledger.query()}
        missing = acked - stored
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
        assert len(stored) >= len(acked) >= 1000
    finally:
        import psycopg

        with psycopg.connect(pg_url) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
