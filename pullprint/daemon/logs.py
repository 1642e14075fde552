"""Structured log lines for the node: ``kv`` (logfmt-style key=value) or ``json`` (one object
a line). The message itself stays as written (the node writes ``key=value`` pairs in it)."""

from __future__ import annotations

import json
import logging
import time


class StructuredFormatter(logging.Formatter):
    """Formats a record as key=value pairs or as a JSON object. Pure per record."""

    def __init__(self, style_name: str) -> None:
        super().__init__()
        self.style_name = style_name

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, str] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "thread": record.threadName or "",
            "msg": record.getMessage(),
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.style_name == "json":
            return json.dumps(fields)
        return " ".join(
            f"{k}={json.dumps(v) if ' ' in v or '=' in v else v}" for k, v in fields.items()
        )


def structured(style_name: str) -> None:
    """Switch every root handler to structured lines (``kv`` or ``json``). Idempotent."""
    if style_name not in ("kv", "json"):
        raise ValueError(f"node.log_format: expected text, kv or json, got {style_name!r}")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(StructuredFormatter(style_name))
