"""The ``pullprint`` command line: a thin shell over ``cloudsync.client`` (the cloud API),
``cli_output`` (tables, JSON, progress bars), ``doctor`` and the node's journal.

Who a command acts as: the session saved by ``pullprint login`` when it belongs to the cloud of
the configuration (or no configuration file is readable), else the configuration's
``cloud.admin_token``; ``--admin`` always takes the admin token.

Exit codes scripts can trust: 0 done; 1 unexpected failure; 2 bad usage or configuration;
3 refused (wrong PIN, not the owner, job not in a state that allows it); 4 not found;
5 the release service is unreachable (try again later).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pullprint import __version__
from pullprint import cli_output as out
from pullprint import config as configmod
from pullprint.cloudsync.client import (
    AdminClient,
    SavedSession,
    forget_session,
    load_session,
    save_session,
)
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

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = range(6)
TERMINAL_METHODS = ("card", "pin", "username")


class Target:
    """The cloud a command talks to and with which credential (for messages)."""

    def __init__(
        self, url: str, token: str, session: SavedSession | None, verify: bool | str = True
    ) -> None:
        self.url = url
        self.token = token
        self.session = session
        self.verify = verify  # node.cloud_ca, or the system CAs

    def client(self) -> AdminClient:
        return AdminClient(self.url, self.token, verify=self.verify)


def _target(args: argparse.Namespace, cfg: configmod.Config) -> Target:
    """Choose the credential (see the module docstring); remembers it on ``args`` for the
    error messages. ConfigError when there is none."""
    url = cfg.node.cloud_url
    session = None if args.admin else load_session()
    if session is not None and (cfg.path is None or session.url == url):
        target = Target(session.url, session.token, session, cfg.node.cloud_verify)
    elif cfg.cloud.admin_token:
        target = Target(url, cfg.cloud.admin_token, None, cfg.node.cloud_verify)
    else:
        raise configmod.ConfigError(
            "not signed in: run `pullprint login` (or set cloud.admin_token in the "
            "configuration to act as the admin)"
        )
    args.target = target
    return target


def _client(args: argparse.Namespace, cfg: configmod.Config) -> AdminClient:
    return _target(args, cfg).client()


# -- jobs ---------------------------------------------------------------------------------------


def _job_row(job: Job) -> list[Any]:
    return [
        job.uuid,
        job.state.value,
        job.owner,
        f"{job.pages}p x{job.copies}",
        job.title,
        job.printer or "",
        job.transaction.summary() if job.transaction else "",
    ]


JOB_HEADERS = ("JOB", "STATE", "OWNER", "PAGES", "TITLE", "PRINTER", "TRANSACTION")


def _print_jobs(jobs: Sequence[Job], as_json: bool, empty: str = "no jobs") -> None:
    out.listing(as_json, [j.to_json() for j in jobs], JOB_HEADERS, map(_job_row, jobs), empty)


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        out.emit_json(job.to_json())
        return
    rows = [
        ("job", job.uuid),
        ("state", job.state.value + (f" ({job.state_reason})" if job.state_reason else "")),
        ("owner", job.owner),
        ("title", job.title),
        ("pages", f"{job.pages} x {job.copies} copies"),
        ("options", _pairs(job.options)),
        ("release changes", _pairs(job.release_options)),
        ("printer", job.printer or "-"),
        ("transaction", job.transaction.summary() if job.transaction else "-"),
    ]
    rows += [(f"finishing {s.option}", f"{s.value}: {s.how} [{s.where}]") for s in job.finishing]
    out.table(("FIELD", "VALUE"), rows)


def _pairs(options: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(options.items())) or "-"


def cmd_jobs(args: argparse.Namespace, cfg: configmod.Config) -> int:
    state = JobState(args.state) if args.state else None
    with _client(args, cfg) as cloud:
        jobs = cloud.list_jobs(user=args.user, state=state, most=args.limit)
    _print_jobs(jobs, args.json, f"no jobs for {args.user}" if args.user else "no jobs")
    return EXIT_OK


def cmd_print(args: argparse.Namespace, cfg: configmod.Config) -> int:
    """Upload FILE into the signed-in user's queue (held), with a progress bar on stderr."""
    path: Path = args.file
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with _client(args, cfg) as cloud, path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        with out.reading_with_progress(fh, size, f"uploading {path.name}") as body:
            job = cloud.upload_job(body, size, args.title or path.name)
    if args.json:
        out.emit_json(job.to_json())
    else:
        print(f"{job.uuid} held in your queue: {job.title!r}, {job.pages} page(s)")
    return EXIT_OK


def _options(pairs: Sequence[str]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option takes key=value, got {pair!r}")
        found[key] = value
    return found


def cmd_release(args: argparse.Namespace, cfg: configmod.Config) -> int:
    options = _options(args.option)
    target = _target(args, cfg)
    if target.session is None and not (args.user and args.pin):
        raise ValueError(
            "release with the admin token needs --user and --pin (or sign in as the user "
            "with `pullprint login`)"
        )
    with target.client() as cloud:
        job = cloud.release(args.job, args.user or "", args.pin or "", args.printer, options)
    if args.json:
        _print_job(job, True)
    else:
        print(f"released {job.uuid} to {job.printer}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        who = args.user or (args.target.session.user if args.target.session else "the admin")
        job = cloud.cancel(args.job, user=args.user, reason=f"canceled by {who}")
    if args.json:
        _print_job(job, True)
    else:
        print(f"canceled {job.uuid}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        job = cloud.get_job(args.job)
    _print_job(job, args.json)
    return EXIT_OK


def cmd_printers(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        printers = cloud.list_printers()
    out.listing(
        args.json,
        [p.to_json() for p in printers],
        ("PRINTER", "URI", "NODE", "PRICE/PAGE", "LOCATION"),
        [(p.name, p.uri, p.node, p.price_per_page, p.location) for p in printers],
        "no printers",
    )
    return EXIT_OK


# -- signing in -----------------------------------------------------------------------------------


def _secret(prompt: str) -> str:
    """A password: asked for on the terminal (not echoed), else one line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise ValueError(f"{prompt.rstrip(': ')}: expected on standard input")
    return line.rstrip("\r\n")


def cmd_login(args: argparse.Namespace, cfg: configmod.Config) -> int:
    url = (args.url or cfg.node.cloud_url).rstrip("/")
    args.target = Target(url, "", None)
    name = args.user or getpass.getuser()
    password = _secret(f"password for {name} at {url}: ")
    with AdminClient(url, "") as cloud:
        answer = cloud.sign_in(name, password)
    session = SavedSession(
        url=url,
        token=str(answer["token"]),
        user=str(answer["user"]),
        role=str(answer.get("role", "")),
        expires_at=float(answer.get("expires_at") or 0),
    )
    path = save_session(session)
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.expires_at))
    print(f"signed in as {session.user} ({session.role}) at {url} until {until}; saved in {path}")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace, cfg: configmod.Config) -> int:
    session = load_session()
    if session is None:
        print("not signed in")
        return EXIT_OK
    args.target = Target(session.url, session.token, session)
    try:
        with AdminClient(session.url, session.token) as cloud:
            cloud.sign_out()
    except (Unauthorized, CloudUnavailable) as exc:
        log.info("the session could not be closed at the cloud (%s); forgetting it here", exc)
    forget_session()
    print(f"signed out {session.user}")
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace, cfg: configmod.Config) -> int:
    target = _target(args, cfg)
    if target.session is None:
        me: dict[str, Any] = {"name": "", "role": "admin", "via": "cloud.admin_token"}
    else:
        with target.client() as cloud:
            me = cloud.me()
    if args.json:
        out.emit_json(me)
    else:
        print(f"{me['name'] or 'the admin (admin token)'} ({me['role']}) at {target.url}")
    return EXIT_OK


# -- administration -----------------------------------------------------------------------------


def _user_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("role", "pin", "display_name", "email"):
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = value
    if args.password:
        fields["password"] = _secret(f"new password for {args.name}: ")
    return fields


def _print_users(users: Sequence[dict[str, Any]], as_json: bool) -> None:
    out.listing(
        as_json,
        users,
        ("USER", "ROLE", "NAME", "PIN", "PASSWORD", "CARDS", "GROUPS", "DISABLED", "SOURCE"),
        [
            (
                u["name"],
                u["role"],
                u["display_name"],
                u["has_pin"],
                u["has_password"],
                [c["key"] + ("" if c["approved"] else " (pending)") for c in u["cards"]],
                u["groups"],
                u["disabled"],
                u["source"],
            )
            for u in users
        ],
        "no users",
    )


def cmd_users(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        users = cloud.list_users()
    _print_users(users, args.json)
    return EXIT_OK


def cmd_user_add(args: argparse.Namespace, cfg: configmod.Config) -> int:
    fields = _user_fields(args)
    if "pin" not in fields and "password" not in fields:
        raise ValueError("give the new user --pin, --password, or both")
    with _client(args, cfg) as cloud:
        cloud.create_user(args.name, **fields)
        if args.card:
            cloud.add_card(args.name, args.card)
        user = cloud.get_user(args.name)
    if args.json:
        out.emit_json(user)
    else:
        print(f"user {args.name} added ({user['role']})")
    return EXIT_OK


def cmd_user_set(args: argparse.Namespace, cfg: configmod.Config) -> int:
    fields = _user_fields(args)
    if args.disable or args.enable:
        fields["disabled"] = bool(args.disable)
    with _client(args, cfg) as cloud:
        if fields or not args.card:
            cloud.put_user(args.name, **fields)
        if args.card:
            cloud.add_card(args.name, args.card)
        user = cloud.get_user(args.name)
    if args.json:
        out.emit_json(user)
    else:
        changed = ", ".join(sorted([*fields, *(["card"] if args.card else [])])) or "nothing"
        print(f"user {args.name}: set {changed}")
    return EXIT_OK


def cmd_groups(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        groups = cloud.list_groups()
    data = [{"name": k, "members": v} for k, v in groups.items()]
    out.listing(args.json, data, ("GROUP", "MEMBERS"), groups.items(), "no groups")
    return EXIT_OK


def cmd_group_set(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        members = cloud.put_group(args.name, list(args.members))
    print(f"group {args.name}: {', '.join(members) or 'no members'}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, cfg: configmod.Config) -> int:
    """Delete the group or terminal (``args.kind``) named ``args.name``."""
    with _client(args, cfg) as cloud:
        remove = cloud.delete_group if args.kind == "group" else cloud.delete_terminal
        remove(args.name)
    print(f"{args.kind} {args.name} deleted")
    return EXIT_OK


def cmd_terminals(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        terminals = cloud.list_terminals()
    out.listing(
        args.json,
        terminals,
        ("TERMINAL", "PRINTER", "SIGN-IN"),
        [(t["name"], t["printer"], t["methods"]) for t in terminals],
        "no terminals",
    )
    return EXIT_OK


def cmd_terminal_add(args: argparse.Namespace, cfg: configmod.Config) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in TERMINAL_METHODS]
    if bad or not methods:
        raise ValueError(f"--methods takes a comma list of {', '.join(TERMINAL_METHODS)}")
    with _client(args, cfg) as cloud:
        answer = cloud.add_terminal(args.name, args.printer, methods)
    if args.json:
        out.emit_json(answer)
    else:
        print(f"terminal {answer['name']} at printer {answer['printer']} ({','.join(methods)})")
        print(f"secret (shown only now; configure it on the terminal): {answer['token']}")
    return EXIT_OK


def cmd_printer_add(args: argparse.Namespace, cfg: configmod.Config) -> int:
    try:
        price = Decimal(args.price)
    except InvalidOperation:
        raise ValueError(f"--price must be a decimal number, got {args.price!r}") from None
    with _client(args, cfg) as cloud:
        printer = cloud.add_printer(Printer(args.name, args.uri, args.node, price, args.location))
    print(f"printer {printer.name} -> {printer.uri} (node {printer.node})")
    return EXIT_OK


def cmd_printer_test(args: argparse.Namespace, cfg: configmod.Config) -> int:
    """Ask the printer from here: IPP Get-Printer-Attributes (state and what it can do), or a
    TCP connection for lpd:// and socket://."""
    from pullprint.daemon.discovery import probe

    with _client(args, cfg) as cloud:
        found = [p for p in cloud.list_printers() if p.name == args.name]
    if not found:
        raise NotFound(404, f"no printer {args.name}")
    result = probe(found[0].name, found[0].uri)
    if args.json:
        out.emit_json(result.to_json())
    else:
        print(result.text())
    return EXIT_OK if result.ok else EXIT_ERROR


def cmd_discover(args: argparse.Namespace, cfg: configmod.Config) -> int:
    """The IPP printers announced with DNS-SD on this host's networks (run it on a node), with
    the URIs to give ``admin printer-add``."""
    from pullprint.daemon.discovery import DiscoveryUnavailable, browse

    try:
        found = browse(args.timeout)
    except DiscoveryUnavailable as exc:
        raise PullprintError(f"DNS-SD discovery is not available here: {exc}") from exc
    out.listing(
        args.json,
        [d.to_json() for d in found],
        ("NAME", "URI", "MAKE AND MODEL", "LOCATION"),
        [(d.name, d.uri, d.make_and_model, d.location) for d in found],
        "no IPP printers announced on this network",
    )
    return EXIT_OK


def _price_entries(spec: str) -> list[dict[str, str]]:
    """``[QUALIFIER,...]=PRICE`` -> price entries: qualifiers are color/mono, one-sided/
    two-sided and a media size (a4, letter...); a colour or sidedness left out (or ``*``)
    gives one entry for each of its values, a media size left out is ``*`` (any)."""
    from pullprint.cloud.accounting.pricing import COLORS, SIDEDNESS

    where, sep, price = spec.rpartition("=")
    if not sep or not price:
        raise ValueError(f"--price takes [color|mono][,one-sided|two-sided][,MEDIA]=PRICE: {spec}")
    chosen: dict[str, tuple[str, ...]] = {"media": ("*",), "color": COLORS, "sides": SIDEDNESS}
    for part in (p.strip() for p in where.split(",")):
        if part in ("", "*"):
            continue
        key = "color" if part in COLORS else "sides" if part in SIDEDNESS else "media"
        chosen[key] = (part,)
    return [
        {"media": media, "color": color, "sides": sides, "price": price.strip()}
        for media in chosen["media"]
        for color in chosen["color"]
        for sides in chosen["sides"]
    ]


def _print_prices(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.emit_json(data)
        return
    print(f"printer {data['printer']}: per {data['unit']}, papercut={data['papercut']}")
    out.table(
        ("MEDIA", "COLOR", "SIDES", "PRICE"),
        [(e["media"], e["color"], e["sides"], e["price"]) for e in data["prices"]],
        empty="  no price list: the printer's price per page applies",
    )


def cmd_prices(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        data = cloud.get_prices(args.printer)
    _print_prices(data, args.json)
    return EXIT_OK


def cmd_price_set(args: argparse.Namespace, cfg: configmod.Config) -> int:
    entries = [e for spec in args.price for e in _price_entries(spec)]
    with _client(args, cfg) as cloud:
        data = cloud.put_prices(args.printer, args.unit, entries, papercut=args.papercut)
    _print_prices(data, args.json)
    return EXIT_OK


def _report_params(args: argparse.Namespace) -> dict[str, str]:
    params = {
        k: str(getattr(args, k))
        for k in ("user", "printer", "account", "since", "until")
        if getattr(args, k, None)
    }
    if getattr(args, "group", None):
        params["group"] = args.group
        params["period"] = args.period
    return params


def _format(args: argparse.Namespace) -> str:
    return "json" if args.json else str(args.format)


def _accounting(args: argparse.Namespace, cfg: configmod.Config, what: str) -> Any:
    """``what`` (reports or transactions) with the command's filters: the CSV written to
    stdout as the cloud made it (returns None), else the API's JSON."""
    params = _report_params(args)
    with _client(args, cfg) as cloud:
        if _format(args) == "csv":
            sys.stdout.write(cloud.csv(what, params))
            return None
        return cloud.report(params) if what == "reports" else cloud.transactions(params)


def cmd_reports(args: argparse.Namespace, cfg: configmod.Config) -> int:
    data = _accounting(args, cfg, "reports")
    if data is None:
        return EXIT_OK
    out.listing(
        _format(args) == "json",
        data,
        (data["group"].upper(), "TRANSACTIONS", "COMPLETED", "PENDING", "CANCELED", "PAGES",
         "AMOUNT", "MISMATCHES"),
        [
            (r["key"], r["transactions"], r["completed"], r["pending"], r["canceled"],
             r["pages"], f"{r['amount']} {r['currency']}", r["mismatches"])
            for r in data["rows"]
        ],
        "no transactions",
    )  # fmt: skip
    return EXIT_OK


def cmd_transactions(args: argparse.Namespace, cfg: configmod.Config) -> int:
    rows = _accounting(args, cfg, "transactions")
    if rows is None:
        return EXIT_OK
    out.listing(
        _format(args) == "json",
        rows,
        ("ID", "JOB", "USER", "PRINTER", "STATUS", "PAGES", "AMOUNT"),
        [
            (r["transaction_id"], r["job_uuid"], r["user"], r["printer"], r["status"],
             r["pages"], f"{r['amount']} {r['currency']}")
            for r in rows
        ],
        "no transactions",
    )  # fmt: skip
    return EXIT_OK


def cmd_retention_run(args: argparse.Namespace, cfg: configmod.Config) -> int:
    with _client(args, cfg) as cloud:
        done = cloud.run_retention()
    if args.json:
        out.emit_json(done)
    else:
        print("retention: " + ", ".join(f"{k} {v}" for k, v in done.items()))
    return EXIT_OK


def cmd_directory_sync(args: argparse.Namespace, cfg: configmod.Config) -> int:
    """Ask the release service to sync users and groups from the directory now."""
    with _client(args, cfg) as cloud:
        result = cloud._json("POST", "/directory/sync", json_body={}, timeout=300)
    if args.json:
        out.emit_json(result)
    else:
        print(
            f"directory sync: {len(result['added'])} added, {len(result['updated'])} updated, "
            f"{len(result['disabled'])} disabled, {result['unchanged']} unchanged, "
            f"{len(result['groups'])} groups, {len(result['skipped'])} skipped"
        )
        for why in result["skipped"]:
            print(f"  skipped {why}")
    return EXIT_OK


# -- services -----------------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.cloud.server import run

    run(cfg.cloud, cfg.directory, cfg.oidc)
    return EXIT_OK


def cmd_node(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.cloudsync.client import CloudClient
    from pullprint.cups.jobs import CupsJobs
    from pullprint.daemon.node import Node

    node_cfg = cfg.node
    args.target = Target(node_cfg.cloud_url, node_cfg.token, None)
    with CloudClient(
        node_cfg.cloud_url, node_cfg.token, timeout=30, verify=node_cfg.cloud_verify
    ) as cloud:
        node = Node(node_cfg, cloud, CupsJobs(node_cfg.cups_server))
        signal.signal(signal.SIGTERM, lambda *_: node.stop())
        signal.signal(signal.SIGINT, lambda *_: node.stop())
        node.run()
    return EXIT_OK


def cmd_submitd(args: argparse.Namespace, cfg: configmod.Config) -> int:
    from pullprint.backend.submitd import SubmitdError, serve

    try:
        serve(cfg)
    except SubmitdError as exc:
        out.error(f"submitd: {exc}")
        return EXIT_USAGE
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


# -- the parser ---------------------------------------------------------------------------------


def _positive(text: str) -> int:
    """A whole number of at least 1 (argparse says the error, with the usage)."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (as the API answers)")


def _user_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--role", choices=("user", "operator", "admin"))
    p.add_argument("--pin", help="4 to 8 digits")
    p.add_argument(
        "--password",
        action="store_true",
        help="set a password: asked for on the terminal, else read as one line of stdin",
    )
    p.add_argument("--card", help="register this card number (hex or decimal), approved")
    p.add_argument("--display-name", dest="display_name")
    p.add_argument("--email")
    _json_flag(p)


def _report_options(p: argparse.ArgumentParser, grouped: bool) -> None:
    if grouped:
        p.add_argument("--group", default="user", choices=("user", "printer", "account", "period"))
        p.add_argument("--period", default="month", choices=("day", "month", "year"))
    p.add_argument("--user")
    p.add_argument("--printer")
    p.add_argument("--account")
    p.add_argument("--since", help="2024-03-01, an ISO time or epoch seconds (inclusive)")
    p.add_argument("--until", help="as --since (exclusive)")
    p.add_argument("--format", default="table", choices=("table", "json", "csv"))
    _json_flag(p)


def _add(sub: Any, name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pullprint", description="pull printing on CUPS")
    parser.add_argument("--version", action="version", version=f"pullprint {__version__}")
    parser.add_argument(
        "--config",
        help="configuration file (default $PULLPRINT_CONFIG or /etc/pullprint/pullprint.toml)",
    )
    parser.add_argument(
        "--admin", action="store_true", help="act with cloud.admin_token, not the saved session"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(sub, "login", cmd_login, "sign in with your password; later commands act as you")
    p.add_argument("user", nargs="?", help="user name (default: your login name)")
    p.add_argument("--url", help="the release service (default node.cloud_url)")
    _add(sub, "logout", cmd_logout, "sign out and forget the saved session")
    _json_flag(_add(sub, "whoami", cmd_whoami, "who the commands act as"))

    p = _add(sub, "print", cmd_print, "put a PDF, PNG or JPEG into your queue (held)")
    p.add_argument("file", type=Path)
    p.add_argument("--title", help="the job's title (default: the file name)")
    _json_flag(p)

    p = _add(sub, "jobs", cmd_jobs, "list jobs (yours when signed in)")
    p.add_argument("--user", help="only this user's jobs")
    p.add_argument("--state", choices=[s.value for s in JobState])
    p.add_argument(
        "--limit", type=_positive, metavar="N", help="only the N newest (default: every job)"
    )
    _json_flag(p)

    p = _add(sub, "show", cmd_show, "show one job with its transaction")
    p.add_argument("job")
    _json_flag(p)

    p = _add(sub, "release", cmd_release, "release a held job to a printer")
    p.add_argument("job")
    p.add_argument("--printer", required=True)
    p.add_argument("--user", help="whose release (with the admin token)")
    p.add_argument("--pin", help="the user's PIN (with the admin token)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change at release: copies=N, sides=two-sided-long-edge, print-color-mode=monochrome",
    )
    _json_flag(p)

    p = _add(sub, "cancel", cmd_cancel, "cancel a job")
    p.add_argument("job")
    p.add_argument("--user", help="cancel as this user (only the owner may)")
    _json_flag(p)

    _json_flag(_add(sub, "printers", cmd_printers, "list printers"))
    _json_flag(_add(sub, "doctor", cmd_doctor, "check this print server's setup; say how to fix"))
    _add(sub, "server", cmd_server, "run the cloud release service")
    p = _add(sub, "node", cmd_node, "run the node daemon (or `node status`)")
    node_sub = p.add_subparsers(dest="node_command", metavar="status")
    _json_flag(_add(node_sub, "status", cmd_node_status, "each job's step, each printer's result"))
    _add(
        sub,
        "submitd",
        cmd_submitd,
        "run the print server's submission helper: the CUPS filter and backend hand jobs to it "
        "on node.submit_socket (without it they run each job themselves, slower)",
    )

    admin = sub.add_parser("admin", help="administration (an admin)").add_subparsers(
        dest="what", required=True, metavar="WHAT"
    )
    _json_flag(_add(admin, "users", cmd_users, "list users"))
    _user_options(_add(admin, "user-add", cmd_user_add, "add a user (PIN and/or password)"))
    p = _add(admin, "user-set", cmd_user_set, "change a user: role, PIN, password, card...")
    _user_options(p)
    p.add_argument("--disable", action="store_true", help="disable (ends their sessions)")
    p.add_argument("--enable", action="store_true")

    _json_flag(_add(admin, "groups", cmd_groups, "list groups with their members"))
    p = _add(admin, "group-set", cmd_group_set, "create a group or replace its members")
    p.add_argument("name")
    p.add_argument("members", nargs="*")
    p = _add(admin, "group-delete", cmd_delete, "delete a group")
    p.add_argument("name")
    p.set_defaults(kind="group")

    _json_flag(_add(admin, "terminals", cmd_terminals, "list release terminals"))
    p = _add(admin, "terminal-add", cmd_terminal_add, "add a terminal; prints its secret once")
    p.add_argument("name")
    p.add_argument("--printer", required=True, help="the printer the terminal releases to")
    p.add_argument("--methods", default="card,pin", help="sign-in: card,pin,username")
    _json_flag(p)
    p = _add(admin, "terminal-delete", cmd_delete, "delete a terminal")
    p.add_argument("name")
    p.set_defaults(kind="terminal")

    _json_flag(_add(admin, "printers", cmd_printers, "list printers"))
    p = _add(admin, "printer-add", cmd_printer_add, "add or change a printer")
    p.add_argument("name")
    p.add_argument("--uri", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--price", default="0", help="price per page, e.g. 0.05")
    p.add_argument("--location", default="")
    p = _add(admin, "printer-test", cmd_printer_test, "ask a printer its state and capabilities")
    p.add_argument("name")
    _json_flag(p)

    p = _add(admin, "discover", cmd_discover, "list IPP printers announced here (DNS-SD)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per service type")
    _json_flag(p)

    p = _add(admin, "prices", cmd_prices, "show a printer's price list")
    p.add_argument("printer")
    _json_flag(p)
    p = _add(admin, "price-set", cmd_price_set, "replace a printer's price list")
    p.add_argument("printer")
    p.add_argument(
        "--price", action="append", default=[], metavar="[QUALIFIERS=]PRICE",
        help="e.g. mono=0.05, color=0.20, mono,two-sided,a4=0.04, '*=0.10' (repeat)",
    )  # fmt: skip
    p.add_argument("--unit", default="impression", choices=("impression", "sheet"))
    p.add_argument("--papercut", action="store_true", help="PaperCut prices this printer")
    _json_flag(p)

    _report_options(_add(admin, "reports", cmd_reports, "usage sums per user, printer..."), True)
    _report_options(
        _add(admin, "transactions", cmd_transactions, "Printer Usage transactions"), False
    )
    _json_flag(_add(admin, "retention-run", cmd_retention_run, "run the retention sweep now"))
    _json_flag(
        _add(admin, "directory-sync", cmd_directory_sync, "sync users and groups from LDAP now")
    )
    return parser


# -- the edge: errors to exit codes ---------------------------------------------------------------


def _load_config(path: str | None) -> configmod.Config:
    """The configuration; a default file this user may not read (a user on the print server)
    counts as none, so a saved session still works."""
    try:
        return configmod.load(path)
    except configmod.ConfigError:
        named = path or os.environ.get(configmod.ENV_VAR)
        default = configmod.DEFAULT_PATH
        if named or not default.exists() or os.access(default, os.R_OK):
            raise
        log.debug("%s is not readable by this user; using the defaults", default)
        return configmod.Config()


def _unreachable(args: argparse.Namespace, exc: CloudUnavailable) -> str:
    target = getattr(args, "target", None)
    url = target.url if target else "node.cloud_url"
    return (
        f"the release service at {url} is unreachable ({exc}): start it with "
        "`pullprint server` or check node.cloud_url"
    )


def _refused(args: argparse.Namespace, exc: CloudRefused) -> str:
    if isinstance(exc, Unauthorized):
        target = getattr(args, "target", None)
        if target is not None and target.session is not None:
            return f"refused: {exc.message}; sign in again with `pullprint login`"
        return f"refused: {exc.message}; check cloud.admin_token in the configuration"
    return f"refused: {exc.message}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = _load_config(args.config)
        if args.command in ("node", "server", "submitd"):
            logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
        if args.command == "node" and cfg.node.log_format != "text":
            from pullprint.daemon.logs import structured

            structured(cfg.node.log_format)
        return int(args.func(args, cfg))
    except configmod.ConfigError as exc:
        out.error(f"configuration: {exc}")
        return EXIT_USAGE
    except ValueError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except (Forbidden, Conflict, Unauthorized) as exc:
        out.error(_refused(args, exc))
        return EXIT_REFUSED
    except NotFound as exc:
        out.error(f"not found: {exc.message}")
        return EXIT_NOT_FOUND
    except InvalidRequest as exc:
        out.error(f"invalid request: {exc.message}")
        return EXIT_USAGE
    except CloudRefused as exc:
        out.error(f"refused ({exc.status}): {exc.message}")
        return EXIT_REFUSED
    except CloudUnavailable as exc:
        out.error(_unreachable(args, exc))
        return EXIT_UNAVAILABLE
    except OSError as exc:
        out.error(f"{exc.filename or ''}: {exc.strerror or exc}")
        return EXIT_USAGE if isinstance(exc, FileNotFoundError | PermissionError) else EXIT_ERROR
    except PullprintError as exc:
        out.error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_ERROR
