"""Printers the cloud releases to, each served by one node; prices kept exact (``price_micro``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud.db import printers
from pullprint.cloud.ledger import micro_to_price, price_to_micro
from pullprint.model import Printer

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

    def all(self) -> list[Printer]:
        """Every printer, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(printers).order_by(printers.c.name)).mappings().all()
        return [from_row(row) for row in rows]
