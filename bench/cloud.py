"""Cloud at scale: p50/p99 of listing a user's queue and of a release, with 1,000,000 jobs in the
database, on SQLite and on PostgreSQL (the private server of ``peers.postgres``); releases per
second on this machine's 2 cores.

The real cloud server runs as its own process; every figure is measured through its HTTP API
from this process on loopback. The rows are not made through the API: one job is registered
(and its document uploaded) through it, then that job's rows (``jobs``, ``transactions``) and
its owner's ``users`` row are cloned with SQLAlchemy Core: ``executemany`` in one transaction on
SQLite, ``COPY`` on PostgreSQL. 10,000 users with 100 jobs each: 10 held, 90 completed.

Figures per database: ``list_held`` (GET /jobs?user=U&state=held, 10 jobs),
``list_all`` (GET /jobs?user=U, 100 jobs), ``release`` (POST /jobs/ID/release with the PIN,
checked against its keyed hash) and ``operator_release`` (the same release path without the
PIN, as a node passes on a CUPS operator's release), then ``releases_per_s`` with ``--threads``
clients at once. The time to build the rows is printed too (``build_seconds``), and what one PIN
check costs in this process: keyed (``pin_check_ms``) and with the argon2id PINs had before
(``argon2_pin_check_ms``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bench._stats import emit, p50_p99
from pullprint.cloud import db
from pullprint.cloud.pins import PinHasher
from pullprint.cloud.users import PIN_HASHER
from pullprint.cloudsync.client import CloudClient
from pullprint.model import JobSubmission, Printer
from pullprint.peers.cloud import CloudServer
from pullprint.peers.documents import make_pdf
from pullprint.peers.postgres import PostgresServer

PIN = "1234"
PER_USER = 100
HELD_PER_USER = 10
BATCH = 20_000


def submit(node: CloudClient, doc: Path, owner: str, origin: str, cups_job_id: int = 1) -> str:
    """Register a job of ``owner`` from node ``origin`` (whose client ``node`` is) and upload
    ``doc`` as its document, as the backend does; returns its uuid."""
    data = doc.read_bytes()
    sub = JobSubmission(
        uuid=str(uuidlib.uuid4()),
        owner=owner,
        title=doc.name,
        copies=1,
        options={},
        pages=int(pikepdf_pages(doc)),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        queue="PullPrint",
        origin=origin,
        cups_job_id=cups_job_id,
        cups_job_uuid="urn:uuid:" + str(uuidlib.uuid4()),
    )
    node.register(sub)
    node.upload_document(sub.uuid, doc)
    return sub.uuid


def pikepdf_pages(doc: Path) -> int:
    import pikepdf

    with pikepdf.open(doc) as pdf:
        return len(pdf.pages)


def register_template(cloud: CloudServer, folder: Path) -> str:
    """One real job of ``u0`` on printer1's node, document uploaded; returns its uuid."""
    doc = make_pdf(folder / "doc.pdf", 2)
    with cloud.node_client("node1") as node:
        return submit(node, doc, "u0", "node1")


def _rows(
    template_job: dict[str, Any], template_tx: dict[str, Any], users: int, start: float
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The cloned (job, transaction) rows: ``users`` x PER_USER, HELD_PER_USER held each."""
    rng = random.Random(7)
    tick = 0
    for index in range(PER_USER):
        for user in range(users):
            if user == 0 and index == 0:
                continue  # the template itself
            tick += 1
            held = index < HELD_PER_USER
            job = dict(template_job)
            uid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            job.update(
                uuid=uid,
                owner=f"u{user}",
                state="held" if held else "completed",
                cups_job_id=tick,
                created_at=start - tick * 0.01,
                updated_at=start - tick * 0.01,
            )
            if not held:
                job.update(printer="printer1", claimed_by="node1", impressions=2, sheets=2)
            tx = dict(template_tx)
            tx.pop("id", None)
            tx.update(
                job_uuid=uid,
                user=f"u{user}",
                status="pending" if held else "completed",
                created_at=job["created_at"],
                updated_at=job["updated_at"],
            )
            yield job, tx


def build(url: str, template: str, total: int) -> float:
    """Clone the template into ``total`` jobs (and their transactions and owners); seconds."""
    users = max(1, total // PER_USER)
    engine = db.make_engine(url)
    began = time.perf_counter()
    try:
        with engine.connect() as conn:
            job = dict(
                conn.execute(sa.select(db.jobs).where(db.jobs.c.uuid == template)).mappings().one()
            )
            tx = dict(
                conn.execute(
                    sa.select(db.transactions).where(db.transactions.c.job_uuid == template)
                )
                .mappings()
                .one()
            )
            owner = dict(
                conn.execute(sa.select(db.users).where(db.users.c.name == "u0")).mappings().one()
            )
        owners = [{**owner, "name": f"u{i}"} for i in range(1, users)]
        rows = _rows(job, tx, users, time.time())
        if engine.dialect.name == "postgresql":
            _copy(engine, owners, rows)
        else:
            _executemany(engine, owners, rows)
        # The steady state of a live database, not the bulk load's aftermath: on PostgreSQL
        # VACUUM too. Else autovacuum makes that pass over the new rows at its next wake-up
        # (autovacuum_naptime, a minute), that is while the requests are timed, on 2 cores
        # beside the server and the client.
        analyze = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(analyze)
    finally:
        engine.dispose()
    return time.perf_counter() - began


def _executemany(
    engine: sa.Engine, owners: list[dict[str, Any]], rows: Iterator[tuple[dict[str, Any], ...]]
) -> None:
    """SQLite: Core executemany in batches, all in one transaction."""
    with engine.begin() as conn:
        conn.execute(sa.insert(db.users), owners)
        while True:
            batch = [pair for _, pair in zip(range(BATCH), rows, strict=False)]
            if not batch:
                break
            conn.execute(sa.insert(db.jobs), [j for j, _ in batch])
            conn.execute(sa.insert(db.transactions), [t for _, t in batch])


def _copy(
    engine: sa.Engine, owners: list[dict[str, Any]], rows: Iterator[tuple[dict[str, Any], ...]]
) -> None:
    """PostgreSQL: COPY ... FROM STDIN through psycopg, one stream per table."""
    job_cols = [c.name for c in db.jobs.columns]
    tx_cols = [c.name for c in db.transactions.columns if c.name != "id"]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(_copy_sql("users", list(owners[0]))) as copy:
            for owner in owners:
                copy.write_row([_pg(owner[c]) for c in owners[0]])
        with cursor.copy(_copy_sql("jobs", job_cols)) as jobs_copy:
            pending: list[dict[str, Any]] = []
            for job, tx in rows:
                jobs_copy.write_row([_pg(job[c]) for c in job_cols])
                pending.append(tx)
        with cursor.copy(_copy_sql("transactions", tx_cols)) as tx_copy:
            for tx in pending:
                tx_copy.write_row([_pg(tx[c]) for c in tx_cols])
        raw.commit()
    finally:
        raw.close()


def _copy_sql(table: str, columns: list[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'COPY "{table}" ({names}) FROM STDIN'


def _pg(value: Any) -> Any:
    """A Python value as COPY takes it (JSON columns as JSON text)."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def held_jobs(url: str, users: int, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` held (uuid, owner) pairs: every held job of random users, in random order."""
    engine = db.make_engine(url)
    rng = random.Random(seed)
    picked: list[tuple[str, str]] = []
    try:
        with engine.connect() as conn:
            for user in rng.sample(range(users), min(users, -(-count // HELD_PER_USER))):
                found = conn.execute(
                    sa.select(db.jobs.c.uuid).where(
                        db.jobs.c.owner == f"u{user}", db.jobs.c.state == "held"
                    )
                ).all()
                picked += [(str(row.uuid), f"u{user}") for row in found]
    finally:
        engine.dispose()
    rng.shuffle(picked)
    return picked[:count]


WARM_UP = 5  # untimed releases of each kind before the timed ones


def measure(cloud: CloudServer, url: str, total: int, n: int, threads: int) -> dict[str, object]:
    """Latencies through the API and the release rate."""
    base = cloud.url + "/api/v1"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {cloud.admin_token}"
    count = max(1, total // PER_USER)
    pick = random.Random(1)
    users = [f"u{pick.randrange(count)}" for _ in range(n)]
    figures: dict[str, object] = {}
    for name, params in (("list_held", {"state": "held"}), ("list_all", {})):
        times = []
        for user in users:
            start = time.perf_counter()
            answer = session.get(f"{base}/jobs", params={"user": user, **params}, timeout=30)
            times.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
        figures.update(p50_p99(times, name))
    targets = held_jobs(url, count, 2 * n + threads * 40 + 2 * WARM_UP, seed=2)
    # Untimed first: a few releases of each kind (the release path's statements are built and
    # cached at its first use), so that neither kind's figures carry that and the order of the
    # two does not favour the second.
    warm, targets = targets[: 2 * WARM_UP], targets[2 * WARM_UP :]
    for index, (uuid, owner) in enumerate(warm):
        if index % 2:
            body = {"printer": "printer1", "operator": "bench"}
            session.post(f"{base}/jobs/{uuid}/operator-release", json=body, timeout=30)
        else:
            body = {"user": owner, "pin": PIN, "printer": "printer1"}
            session.post(f"{base}/jobs/{uuid}/release", json=body, timeout=30)
    release_times = []
    for uuid, owner in targets[:n]:
        body = {"user": owner, "pin": PIN, "printer": "printer1"}
        start = time.perf_counter()
        answer = session.post(f"{base}/jobs/{uuid}/release", json=body, timeout=30)
        release_times.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    figures.update(p50_p99(release_times, "release"))
    operator_times = []
    for uuid, _owner in targets[n : 2 * n]:
        body = {"printer": "printer1", "operator": "bench"}
        start = time.perf_counter()
        answer = session.post(f"{base}/jobs/{uuid}/operator-release", json=body, timeout=30)
        operator_times.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    figures.update(p50_p99(operator_times, "operator_release"))
    rest = targets[2 * n :]

    def release(pair: tuple[str, str]) -> int:
        uuid, owner = pair
        with requests.Session() as own:
            own.headers["Authorization"] = f"Bearer {cloud.admin_token}"
            body = {"user": owner, "pin": PIN, "printer": "printer1"}
            return own.post(f"{base}/jobs/{uuid}/release", json=body, timeout=60).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        codes = list(pool.map(release, rest))
    elapsed = time.perf_counter() - start
    figures["releases_per_s"] = round(sum(c == 200 for c in codes) / elapsed, 1)
    figures["release_errors"] = sum(c != 200 for c in codes)
    figures["threads"] = threads
    session.close()
    return figures


def check_ms(
    hash_: Callable[[str], str], verify: Callable[[str, str], object], runs: int = 20
) -> float:
    """What one PIN check with ``verify`` costs in this process (ms)."""
    hashed = hash_(PIN)
    start = time.perf_counter()
    for _ in range(runs):
        verify(hashed, PIN)
    return round((time.perf_counter() - start) / runs * 1000, 4)


def run_one(kind: str, total: int, n: int, threads: int, root: Path) -> dict[str, object]:
    pg: PostgresServer | None = None
    folder = root / kind
    folder.mkdir()
    try:
        if kind == "postgresql":
            pg = PostgresServer().start()
            url = pg.create_database("bench")
        else:
            url = f"sqlite:///{folder / 'cloud.db'}"
        cloud = CloudServer(folder / "cloud", database_url=url, retention_sweep_seconds=3600.0)
        with cloud:
            with cloud.admin_client() as admin:
                admin.add_user("u0", PIN)
                admin.add_printer(Printer("printer1", "ipp://127.0.0.1:1/ipp/print", "node1"))
            template = register_template(cloud, folder)
            build_seconds = build(url, template, total)
            # The build leaves GBs of dirty pages; flushed while timing, they landed in the
            # figures (PostgreSQL's release p99 right after the SQLite run: 25-49 ms, alone 14.4).
            os.sync()
            figures = measure(cloud, url, total, n, threads)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)  # its pages are not written back later
    keyed = PinHasher(secrets.token_bytes(32))
    return {
        "bench": "cloud",
        "database": kind,
        "jobs": total,
        "n": n,
        "build_seconds": round(build_seconds, 1),
        **figures,
        "pin_check_ms": check_ms(keyed.hash, keyed.verify),
        "argon2_pin_check_ms": check_ms(PIN_HASHER.hash, PIN_HASHER.verify),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the database")
    parser.add_argument("-n", type=int, default=200, help="timed requests of each kind")
    parser.add_argument("--threads", type=int, default=4, help="clients for releases per second")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pullprint-bench-") as tmp:
        for kind in args.databases.split(","):
            emit(run_one(kind, args.jobs, args.n, args.threads, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
