"""The CUPS backend ``pullprint`` (device URI ``pullprint:/``): a thin shell over
:mod:`pullprint.backend.hold`. With no arguments it prints its discovery line; with 5 or 6 it
handles a job (document on stdin, or in the file named by the 6th). The installed executable
first hands a job's first run to ``pullprint submitd`` (:mod:`pullprint.cups.handoff`)."""

from __future__ import annotations

import logging
import os
import sys

from pullprint import config as configmod
from pullprint.backend.hold import BackendContext, run_job
from pullprint.cloudsync.client import CloudClient
from pullprint.cups.protocol import BackendExit, CancelFlag, StatusWriter, parse_job_args, queue_of

DISCOVERY = (
    'network pullprint:/ "pullprint" "pullprint secure release" '
    '"MFG:pullprint;MDL:secure release;CMD:PDF;CLS:PRINTER;"'
)


def main(argv: list[str] | None = None, *, resume: bool = False) -> int:
    """Run the backend; ``resume``: finish a first run submitd took and did not answer
    (:func:`pullprint.backend.hold.run_job`)."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) == 1:
        print(DISCOVERY, flush=True)
        return BackendExit.OK
    status = StatusWriter()
    logging.basicConfig(
        level=logging.INFO, format="DEBUG: %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        args = parse_job_args(argv)
        node = configmod.load().node
    except (ValueError, configmod.ConfigError) as exc:
        status.error(f"pullprint backend: {exc}")
        return BackendExit.FAILED
    cancel = CancelFlag()
    with (
        cancel.on_sigterm(),
        CloudClient(
            node.cloud_url, node.token, timeout=node.register_timeout, verify=node.cloud_verify
        ) as cloud,
    ):
        ctx = BackendContext(
            config=node,
            queue=queue_of(os.environ),
            status=status,
            cancel=cancel,
            cloud=cloud,
        )
        if args.file:
            with open(args.file, "rb") as source:
                return run_job(ctx, args, source, resume=resume)
        return run_job(ctx, args, sys.stdin.buffer, resume=resume)
