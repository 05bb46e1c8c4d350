"""Commands of the ``openhpo`` CLI that talk to a running API server through :class:`openhpo.client.Client`.

Each takes ``--url`` and ``--token`` (default: ``OPENHPO_URL`` and ``OPENHPO_API_TOKEN``) and ``--json`` for
output that scripts read. Errors print one line on standard error and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
out = Console(highlight=False, soft_wrap=True, markup=False)


def _client(args: argparse.Namespace):
    from openhpo.client import Client

    return Client(args.url, args.token, user=args.user)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _metric_text(experiment: dict[str, Any] | None) -> str:
    return "-" if not experiment else f"{experiment['metricVal']:.6g}"


def cmd_submit(args: argparse.Namespace) -> int:
    spec = Path(args.spec)
    code: Path | None = None
    if not args.no_code:
        code = Path(args.code) if args.code else spec.resolve().parent
    with _client(args) as client:
        name = client.submit(spec, code, name=args.name)
        if not args.wait:
            if args.json:
                _print_json({"hpoName": name})
            else:
                out.print(name)
            return 0
        console.print(f"submitted {name}", markup=False)
        status = client.wait(name, progress=not args.json, poll=args.poll)
    from openhpo.cli import _print_results

    _print_results(status, args.json)
    return 0 if status["state"] == "FINISHED" else 1


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        tasks = client.list(args.state)
    if args.json:
        _print_json([{key: task.get(key) for key in ("hpoName", "state", "progress", "running", "complete", "failed",
                                                     "creator", "createtime", "duration", "best")}
                     for task in tasks])
        return 0
    table = Table(show_lines=False)
    for column in ("task", "state", "progress", "running", "failed", "best", "creator", "created", "duration"):
        table.add_column(column, overflow="fold")
    for task in tasks:
        table.add_row(task["hpoName"], task["state"], task["progress"], str(task["running"]), str(task["failed"]),
                      _metric_text(task.get("best")), task["creator"], task.get("createtime") or "",
                      task["duration"])
    out.print(table)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.get(args.name)
    from openhpo.cli import _print_results

    _print_results(status, args.json)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text = client.logs(args.name, args.trial)
        if args.json:
            _print_json({"appId": f"{args.name}-{args.trial}", "log": text})
            return 0
        sys.stdout.write(text)
        sys.stdout.flush()
        while args.follow and client.exec(args.name, args.trial)["state"] in ("WAITING", "RUNNING"):
            time.sleep(args.poll)
            newer = client.logs(args.name, args.trial)
            # The server keeps the last 1 MiB: print what follows the text already shown, or all of it after a cut.
            sys.stdout.write(newer[len(text):] if newer.startswith(text) else newer)
            sys.stdout.flush()
            text = newer
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.stop(args.name, force=args.force)
    if args.json:
        _print_json({"hpoName": args.name, "stop": "force" if args.force else "graceful"})
    else:
        console.print(f"stop requested for {args.name}" + (" (force)" if args.force else ""), markup=False)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.restart(args.name)
    if args.json:
        _print_json(status)
    else:
        console.print(f"{args.name} restarted: {status['state']}, {status['progress']}", markup=False)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        console.print("error: give a task name or --all, not both", markup=False)
        return 2
    with _client(args) as client:
        if not args.all:
            client.delete(args.name)
            if args.json:
                _print_json({"deleted": [args.name], "skipped": []})
            else:
                console.print(f"deleted {args.name}", markup=False)
            return 0
        report = client.delete_all()
    if args.json:
        _print_json(report)
        return 0
    console.print(f"deleted {len(report['deleted'])} ended tasks", markup=False)
    for skipped in report["skipped"]:
        console.print(f"kept {skipped['hpoName']} ({skipped['state']}): {skipped['reason']}", markup=False)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.get(args.name)
    best = status.get("best")
    if args.json:
        _print_json(best)
        return 0 if best else 1
    if not best:
        console.print(f"{args.name} ({status['state']}) has no trial with a result yet", markup=False)
        return 1
    metric = status["algoDef"].get("objectiveMetric", "metric")
    out.print(f"trial {best['id']}: {metric} = {best['metricVal']:.6g}", markup=False)
    out.print(json.dumps(best["values"]), markup=False)
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    with _client(args) as client:
        path = client.result(args.name, args.trial, args.output)
    if args.json:
        _print_json({"appId": f"{args.name}-{args.trial}", "path": str(path), "size": path.stat().st_size})
    else:
        console.print(f"wrote {path} ({path.stat().st_size} bytes)", markup=False)
    return 0


def add_remote_commands(sub: argparse._SubParsersAction) -> None:
    """Add the API client commands to the ``openhpo`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="API server address (default: OPENHPO_URL, else "
                        "http://127.0.0.1:8000)")
    common.add_argument("--token", default=None, help="API token (default: OPENHPO_API_TOKEN)")
    common.add_argument("--user", default=None, help="creator name to record, with the administrator token "
                        "(sent as X-User)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")

    def add(name: str, func, help_text: str, description: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[common], help=help_text, description=description)
        parser.set_defaults(func=func)
        return parser

    submit = add("submit", cmd_submit, "submit a task to the API server",
                 "Submit a task definition (WMLA's JSON body) with its model code; prints the task name.")
    submit.add_argument("spec", help="JSON task definition (modelSpec, algoDef, hyperParams)")
    submit.add_argument("--code", help="model directory, .py script or tar.gz (default: the spec file's directory)")
    submit.add_argument("--no-code", action="store_true", help="send no code (modelSpec runs a command that the "
                        "workers have)")
    submit.add_argument("--name", help="task name (hpoName); generated when neither this nor the spec gives one")
    submit.add_argument("--wait", action="store_true", help="wait for the end with a progress bar, print the "
                        "results, and exit 1 unless the task FINISHED")
    submit.add_argument("--poll", type=float, default=2.0, help="seconds between status requests with --wait "
                        "(default: 2)")

    listing = add("list", cmd_list, "list tasks", "List the tasks the token may see, oldest first.")
    listing.add_argument("--state", choices=["SUBMITTED", "RUNNING", "FINISHED", "FAILED", "STOPPED"],
                         help="only tasks in this state")

    status = add("status", cmd_status, "show a task's trials and best result",
                 "Show a task's state, every trial and the best one.")
    status.add_argument("name", help="task name (hpoName)")

    logs = add("logs", cmd_logs, "print a trial's training log",
               "Print the training log of a trial's latest attempt (its last 1 MiB).")
    logs.add_argument("name", help="task name (hpoName)")
    logs.add_argument("trial", type=int, help="trial (experiment) id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing while the trial runs")
    logs.add_argument("--poll", type=float, default=1.0, help="seconds between requests with --follow (default: 1)")

    stop = add("stop", cmd_stop, "stop a task", "Stop a task: no new trials start and running ones are stopped.")
    stop.add_argument("name", help="task name (hpoName)")
    stop.add_argument("--force", action="store_true", help="end the task at once instead of when its trials "
                      "have stopped")

    restart = add("restart", cmd_restart, "restart a stopped or failed task",
                  "Restart a STOPPED or FAILED task; its ended trials are kept.")
    restart.add_argument("name", help="task name (hpoName)")

    delete = add("delete", cmd_delete, "delete an ended task, or all of yours",
                 "Delete an ended task with its trials, or with --all every ended task you created (running ones "
                 "are kept and listed).")
    delete.add_argument("name", nargs="?", help="task name (hpoName)")
    delete.add_argument("--all", action="store_true", help="delete every ended task you created")

    best = add("best", cmd_best, "print a task's best hyperparameters",
               "Print the best trial's objective value and hyperparameters; exit 1 while no trial has a result.")
    best.add_argument("name", help="task name (hpoName)")

    result = add("result", cmd_result, "download a trial's result directory",
                 "Download a trial's RESULT_DIR as a zip.")
    result.add_argument("name", help="task name (hpoName)")
    result.add_argument("trial", type=int, help="trial (experiment) id")
    result.add_argument("-o", "--output", help="zip file to write (default: <name>-<trial>.zip)")
