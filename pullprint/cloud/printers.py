"""Printers the cloud releases to, each served by one node; prices kept exact (``price_micro``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud.db import discovered_printers, printers
from pullprint.cloud.ledger import micro_to_price, price_to_micro
from pullprint.model import Discovered, Printer

log = logging.getLogger(__name__)


def from_row(row: Mapping[Any, Any]) -> Printer:
    """The model of a ``printers`` row."""
    return Printer(
        name=str(row["name"]),
        uri=str(row["uri"]),
        node=str(row["node"]),
        price_per_page=micro_to_price(int(row["price_micro"])),
        location=str(row["location"]),
    )


def get(conn: Connection, name: str) -> Printer | None:
    """The printer called ``name``, or None."""
    row = conn.execute(sa.select(printers).where(printers.c.name == name)).mappings().first()
    return from_row(row) if row else None


class PrinterRegistry:
    """The ``printers`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert(self, printer: Printer) -> Printer:
        """Create or replace the printer of that name (idempotent); returns it as stored."""
        values = {
            "uri": printer.uri,
            "node": printer.node,
            "price_micro": price_to_micro(printer.price_per_page),
            "location": printer.location,
            "updated_at": time.time(),
        }
        for _attempt in range(3):
            try:
                with self._engine.begin() as conn:
                    done = conn.execute(
                        sa.update(printers).where(printers.c.name == printer.name).values(values)
                    )
                    if done.rowcount == 0:
                        conn.execute(sa.insert(printers).values(name=printer.name, **values))
                    stored = get(conn, printer.name)
                break
            except IntegrityError:  # inserted concurrently: update it on the next round
                continue
        else:
            raise RuntimeError(f"could not store printer {printer.name}")
        assert stored is not None
        log.info("stored printer %s (node %s)", printer.name, printer.node)
        return stored

    def get(self, name: str) -> Printer | None:
        with self._engine.connect() as conn:
            return get(conn, name)

    def report_discovered(self, node: str, found: list[Discovered], now: float) -> int:
        """Replace what ``node`` last found announced on its network (DNS-SD). Idempotent."""
        with self._engine.begin() as conn:
            conn.execute(sa.delete(discovered_printers).where(discovered_printers.c.node == node))
            for d in {d.uri: d for d in found}.values():
                conn.execute(
                    sa.insert(discovered_printers).values(
                        node=node,
                        uri=d.uri,
                        name=d.name,
                        make_and_model=d.make_and_model,
                        location=d.location,
                        seen_at=now,
                    )
                )
        return len(found)

    def discovered(self) -> list[tuple[str, Discovered, float]]:
        """What every node last reported: (node, printer, when), by node and name."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(discovered_printers).order_by(
                    discovered_printers.c.node, discovered_printers.c.name
                )
            ).all()
        return [
            (
                r.node,
                Discovered.from_json(
                    {
                        "name": r.name,
                        "uri": r.uri,
                        "make_and_model": r.make_and_model,
                        "location": r.location,
                    }
                ),
                float(r.seen_at),
            )
            for r in rows
        ]

    def all(self) -> list[Printer]:
        """Every printer, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(printers).order_by(printers.c.name)).mappings().all()
        return [from_row(row) for row in rows]
