"""The ``pullprint`` command line.

Exit codes scripts can trust: 0 done; 1 unexpected failure; 2 bad usage or configuration;
3 refused (wrong PIN, not the owner, job not in a state that allows it); 4 not found;
5 the release service is unreachable (try again later).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from pullprint import __version__
from pullprint import config as configmod
from pullprint.errors import (
    CloudRefused,
    CloudUnavailable,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PullprintError,
    Unauthorized,
)
from pullprint.model import Job, JobState, Printer

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = range(6)


def _client(cfg: configmod.Config) -> Any:
    from pullprint.cloudsync.client import CloudClient

    if not cfg.cloud.admin_token:
        raise configmod.ConfigError(
            "cloud.admin_token: not set; the command line needs it to talk to the release service"
        )
    return CloudClient(cfg.node.cloud_url, cfg.cloud.admin_token)


def _job_line(job: Job) -> str:
    tx = job.transaction.summary() if job.transaction else ""
    where = f" -> {job.printer}" if job.printer else ""
    return (
        f"{job.uuid}  {job.state.value:<9} {job.owner:<12} {job.pages:>4}p x{job.copies}"
        f"  {job.title!r}{where}  {tx}"
    )


def _print_job(job: Job, as_json: bool) -> None:
    print(json.dumps(job.to_json(), indent=2) if as_json else _job_line(job))


def cmd_jobs(args: argparse.Namespace, cfg: configmod.Config) -> int:
    state = JobState(args.state) if args.state else None
    with _client(cfg) as cloud:
        jobs = cloud.list_jobs(user=args.user, state=state)
    if args.json:
        print(json.dumps([j.to_json() for j in jobs], indent=2))
    elif not jobs:
        print(f"no jobs for {args.user}" if args.user else "no jobs")
    else:
        for job in jobs:
            print(_job_line(job))
    return EXIT_OK


def _options(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option takes key=value, got {pair!r}")
        out[key] = value
    return out


def cmd_release(args: argparse.Namespace, cfg: configmod.Config) -> int:
    options = _options(args.option)
    with _client(cfg) as cloud:
        job = cloud.release(args.job, args.user, args.pin, args.printer, options)
    if args.json:
        _print_job(job, True)
    else:
        print(f"released {job.uuid} to {job.printer}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(cfg) as cloud:
        job = cloud.cancel(args.job, user=args.user, reason=f"canceled by {args.user}")
    if args.json:
        _print_job(job, True)
    else:
        print(f"canceled {job.uuid}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(cfg) as cloud:
        job = cloud.get_job(args.job)
    _print_job(job, args.json)
    return EXIT_OK


def cmd_printers(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(cfg) as cloud:
        printers = cloud.list_printers()
    if args.json:
        print(json.dumps([p.to_json() for p in printers], indent=2))
    for p in [] if args.json else printers:
        print(f"{p.name:<16} {p.uri:<40} node={p.node} price/page={p.price_per_page}")
    return EXIT_OK


def cmd_admin(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(cfg) as cloud:
        if args.what == "user-add":
            cloud.add_user(args.name, args.pin)
            print(f"user {args.name} added")
        elif args.what == "printer-add":
            try:
                price = Decimal(args.price)
            except InvalidOperation:
                raise ValueError(f"--price must be a decimal number, got {args.price!r}") from None
            printer = cloud.add_printer(
                Printer(args.name, args.uri, args.node, price, args.location)
            )
            print(f"printer {printer.name} -> {printer.uri} (node {printer.node})")
    return EXIT_OK


def cmd_directory_sync(args: argparse.Namespace, cfg: configmod.Config) -> int:
    """Ask the release service to sync users and groups from the directory now."""
    with _client(cfg) as cloud:
        result = cloud._json("POST", "/directory/sync", json_body={}, timeout=300)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"directory sync: {len(result['added'])} added, {len(result['updated'])} updated, "
            f"{len(result['disabled'])} disabled, {result['unchanged']} unchanged, "
            f"{len(result['groups'])} groups, {len(result['skipped'])} skipped"
        )
        for why in result["skipped"]:
            print(f"  skipped {why}")
    return EXIT_OK


def cmd_server(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.cloud.server import run

    run(cfg.cloud)
    return EXIT_OK


def cmd_node(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.cloudsync.client import CloudClient
    from pullprint.cups.jobs import CupsJobs
    from pullprint.daemon.node import Node

    node_cfg = cfg.node
    with CloudClient(node_cfg.cloud_url, node_cfg.token, timeout=30) as cloud:
        node = Node(node_cfg, cloud, CupsJobs(node_cfg.cups_server))
        signal.signal(signal.SIGTERM, lambda *_: node.stop())
        signal.signal(signal.SIGINT, lambda *_: node.stop())
        node.run()
    return EXIT_OK


def cmd_node_status(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.daemon.journal import status_report

    print(status_report(cfg.node.spool_dir, as_json=args.json))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.doctor import report

    code, text = report(cfg, as_json=args.json)
    print(text)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pullprint", description="pull printing on CUPS")
    parser.add_argument("--version", action="version", version=f"pullprint {__version__}")
    parser.add_argument(
        "--config",
        help="configuration file (default $PULLPRINT_CONFIG or /etc/pullprint/pullprint.toml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--user", help="only this user's jobs")
    p.add_argument("--state", choices=[s.value for s in JobState])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("show", help="show one job with its transaction")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("release", help="release a held job to a printer")
    p.add_argument("job")
    p.add_argument("--printer", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--pin", required=True)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change at release: copies=N, sides=two-sided-long-edge, print-color-mode=monochrome",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job")
    p.add_argument("--user", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("printers", help="list printers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_printers)

    p = sub.add_parser("doctor", help="check this print server's setup and say how to fix it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("server", help="run the cloud release service")
    p.set_defaults(func=cmd_server)
    p = sub.add_parser("node", help="run the node daemon (or `node status`)")
    p.set_defaults(func=cmd_node)
    node_sub = p.add_subparsers(dest="node_command")
    ps = node_sub.add_parser("status", help="each job's journaled step, each printer's last result")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_node_status)

    admin = sub.add_parser("admin", help="administration").add_subparsers(
        dest="what", required=True
    )
    p = admin.add_parser("user-add", help="add a user with a PIN")
    p.add_argument("name")
    p.add_argument("--pin", required=True)
    p.set_defaults(func=cmd_admin)
    p = admin.add_parser("printer-add", help="add or change a printer")
    p.add_argument("name")
    p.add_argument("--uri", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--price", default="0", help="price per page, e.g. 0.05")
    p.add_argument("--location", default="")
    p.set_defaults(func=cmd_admin)
    p = admin.add_parser("directory-sync", help="sync users and groups from the directory now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_directory_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = configmod.load(args.config)
        if args.command == "node" and cfg.node.log_format != "text":
            from pullprint.daemon.logs import structured

            structured(cfg.node.log_format)
        return int(args.func(args, cfg))
    except configmod.ConfigError as exc:
        print(f"pullprint: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"pullprint: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Forbidden, Conflict, Unauthorized) as exc:
        print(f"pullprint: refused: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except NotFound as exc:
        print(f"pullprint: not found: {exc.message}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except InvalidRequest as exc:
        print(f"pullprint: invalid request: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except CloudRefused as exc:
        print(f"pullprint: refused ({exc.status}): {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except CloudUnavailable as exc:
        print(
            f"pullprint: the release service is unreachable ({exc}); is `pullprint server` "
            "running and node.cloud_url right?",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except PullprintError as exc:
        print(f"pullprint: {exc}", file=sys.stderr)
        return EXIT_ERROR
