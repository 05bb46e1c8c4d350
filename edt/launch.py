"""The launcher process of one gang member: a torch elastic agent for one node with one training process.

A member starts ``python -m edt.launch --endpoint HOST:PORT ... -- COMMAND...``. The launcher builds a
``LaunchConfig`` for the c10d rendezvous backend (``min_nodes``/``max_nodes`` are the trial's minimum and maximum
width, ``nproc_per_node`` is 1) and runs ``COMMAND`` under ``elastic_launch``. The rendezvous store is a TCPStore
that the gang's host member already serves at ``HOST:PORT``, so no launcher hosts it (``is_host`` is false for all
of them) and a launcher can restart without taking the store down.

The agent restarts the training processes of every node when one of them fails (up to ``--max-restarts`` times)
and when a new node joins (membership changes do not count as restarts). The training process receives torch's
elastic environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``,
``TORCHELASTIC_RESTART_COUNT``, ...).

When the agent returns, the launcher writes ``--outcome`` as JSON, which the member reads:

* ``{"ok": true, "rank": R}``: the training processes succeeded and this node's process last ran as global
  rank ``R``;
* ``{"ok": false, "kind": K, "error": TEXT}``: they did not. ``K`` is ``"script"`` (a training process failed
  after the last restart), ``"closed"`` (another node ended the rendezvous), ``"timeout"`` (too few nodes came),
  ``"rendezvous"`` (the store could not be reached), ``"signal"`` (the launcher received a stop signal) or ``"error"``.

The exit status is 0 on success and 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

#: Seconds the agent waits after SIGTERM to the training processes before it kills them.
SHUTDOWN_TIMEOUT_SECONDS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edt.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="HOST:PORT of the TCPStore that stores the rendezvous")
    parser.add_argument("--run-id", required=True, help="rendezvous id shared by every node of the group")

    parser.add_argument("--min-nodes", type=int, required=True, help="nodes needed to start training")
    parser.add_argument("--max-nodes", type=int, required=True, help="most nodes the group may grow to")
    parser.add_argument("--max-restarts", type=int, default=3,
                        help="restarts of the training processes after a failure (default: 3)")
    parser.add_argument("--local-addr", default=None,
                        help="address other nodes reach this node at (default: the host's FQDN)")

    parser.add_argument("--join-timeout", type=int, default=120,
                        help="seconds a rendezvous round may wait for --min-nodes nodes (default: 120)")
    parser.add_argument("--last-call-timeout", type=int, default=1,
                        help="seconds a round waits for more nodes once --min-nodes have joined (default: 1)")
    parser.add_argument("--keep-alive-interval", type=int, default=1,
                        help="seconds between the rendezvous keep-alive beats of this node (default: 1)")
    parser.add_argument("--keep-alive-max-attempt", type=int, default=3,
                        help="missed keep-alive beats after which a node counts as dead (default: 3)")
    parser.add_argument("--read-timeout", type=int, default=30,
                        help="seconds a rendezvous store operation may take (default: 30)")

    parser.add_argument("--log-dir", default=None, help="directory for torch elastic's error files")
    parser.add_argument("--outcome", required=True, help="path of the JSON outcome file to write")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...] of one training process")

    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("the training command is missing; give it after --")
    if not 1 <= args.min_nodes <= args.max_nodes:
        parser.error(f"--min-nodes {args.min_nodes} and --max-nodes {args.max_nodes} must satisfy "
                     "1 <= min <= max")
    return args


def _write_outcome(path: str, outcome: dict[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(outcome))
    os.replace(tmp, target)


def _describe_failure(exc: Exception) -> tuple[str, str]:
    """Classify what ended the agent, as (kind, message)."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import (RendezvousClosedError, RendezvousConnectionError,
                                                      RendezvousError, RendezvousTimeoutError)

    if isinstance(exc, ChildFailedError):
        parts = []
        for rank, failure in sorted(exc.failures.items()):
            message = failure.message if isinstance(failure.message, str) else json.dumps(failure.message)
            text = f"rank {rank} exited with code {failure.exitcode}"
            if message and message != "<N/A>" and "To enable traceback" not in message:
                text += f": {message}"
            parts.append(text)
        return "script", "; ".join(parts) or str(exc)
    if isinstance(exc, SignalException):
        return "signal", f"the launcher received {exc.sigval.name}"
    if isinstance(exc, RendezvousClosedError):
        return "closed", "the rendezvous was closed by another node"
    if isinstance(exc, RendezvousTimeoutError):
        return "timeout", f"too few nodes joined the rendezvous in time: {exc}"
    if isinstance(exc, (RendezvousConnectionError, RendezvousError)):
        return "rendezvous", f"{type(exc).__name__}: {exc}"
    return "error", f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # By default (torch 2.4 and later) the rendezvous and the worker group share one TCPStore. Then an agent that
    # stays rank 0 across rendezvous rounds does not publish the master address again in the new round, and a node
    # that joins in a later round waits for it until it times out (seen with torch 2.13). With sharing off, the
    # training processes host their own store, as in torch releases before 2.4.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=args.min_nodes,
        max_nodes=args.max_nodes,
        nproc_per_node=1,
        run_id=args.run_id,
        rdzv_backend="c10d",
        rdzv_endpoint=args.endpoint,
        rdzv_configs={
            "is_host": False,
            "join_timeout": args.join_timeout,
            "last_call_timeout": args.last_call_timeout,
            "close_timeout": 10,
            "keep_alive_interval": args.keep_alive_interval,
            "keep_alive_max_attempt": args.keep_alive_max_attempt,
            "read_timeout": args.read_timeout,
        },
        max_restarts=args.max_restarts,
        monitor_interval=0.2,
        local_addr=args.local_addr,
        logs_specs=DefaultLogsSpecs(log_dir=args.log_dir),
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    # Every training process goes through edt.child, so that it dies with this launcher.
    entry_args = ["-u", "-m", "edt.child", *args.command]
    try:
        results = elastic_launch(config, sys.executable)(*entry_args)
    except Exception as exc:  # every way the agent can end goes to the outcome file for the member to judge
        kind, message = _describe_failure(exc)
        logging.getLogger("edt.launch").error("elastic agent ended: %s: %s", kind, message)
        _write_outcome(args.outcome, {"ok": False, "kind": kind, "error": message})
        return 1
    ranks = sorted(results)
    _write_outcome(args.outcome, {"ok": True, "rank": ranks[0] if ranks else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
