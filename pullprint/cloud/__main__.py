"""``python -m pullprint.cloud --config PATH``: run the release service."""

from __future__ import annotations

import argparse
import logging
import sys

from pullprint.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the configuration and serve until stopped; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m pullprint.cloud", description=__doc__)
    parser.add_argument(
        "--config",
        help="configuration file (default: $PULLPRINT_CONFIG or /etc/pullprint/pullprint.toml)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        loaded = load(args.config)
    except ConfigError as exc:
        print(f"pullprint cloud: {exc}", file=sys.stderr)
        return 2
    from pullprint.cloud.server import run  # imported late: keeps --help fast

    try:
        run(loaded.cloud, loaded.directory, loaded.oidc)
    except ConfigError as exc:
        print(f"pullprint cloud: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
