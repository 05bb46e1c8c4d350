"""The ``openhpo`` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hpo_core.errors import OpenHPOError

# soft_wrap: messages and JSON keep their lines when output goes to a pipe, where rich assumes 80 columns.
# markup off: failure reasons and messages quote program output such as "[rank1]:", which is not rich markup.
console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
out = Console(soft_wrap=True, markup=False, highlight=False)


def _print_results(status: dict[str, Any], as_json: bool, work_dir: Path | None = None) -> None:
    """Print the final table, the failures with their reasons, and the best hyperparameters.

    ``work_dir`` is where local trials ran; with it, each failure names its log file.
    """
    if as_json:
        print(json.dumps(status, indent=2))
        return
    objective = status["algoDef"].get("objectiveMetric", "metric")
    if status["experiments"]:
        out.print(_results_table(status, str(objective)))
    else:
        out.print(f"{status['hpoName']}: {status['state']}, no trial ran", soft_wrap=True)

    for exp in status["experiments"]:
        if exp["state"] == "FINISHED" or not exp.get("reason"):
            continue
        line = f"trial {exp['id']} {exp['state']}: {exp['reason'].splitlines()[0]}"
        if work_dir is not None:
            # log/stdout for a plain trial, log/member-<slot>/stdout for each member of an elastic one.
            line += f"\n  logs: {work_dir.resolve() / status['hpoName'] / str(exp['id'])}" \
                    f"/attempt-{exp.get('attempt', 1)}/log/"
        out.print(line, soft_wrap=True)
    if status.get("reason"):
        out.print(f"task {status['state']}: {status['reason'].splitlines()[0]}", soft_wrap=True)
    best = status.get("best")
    if best:
        out.print(f"best trial {best['id']}: {objective} = {best['metricVal']:.6g}", soft_wrap=True)
        out.print("best hyperparameters: " + json.dumps(best["values"]), soft_wrap=True)
    elif status["experiments"]:
        out.print("no trial produced a result")


def _results_table(status: dict[str, Any], objective: str) -> Table:
    """Build the table of the task's trials: state, objective value, duration and hyperparameters."""
    table = Table(title=f"{status['hpoName']}: {status['state']}")
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column(objective, justify="right", no_wrap=True)
    table.add_column("time (s)", justify="right", no_wrap=True)
    table.add_column("hyperparameters", overflow="fold")
    for exp in status["experiments"]:
        has_value = exp["state"] in ("FINISHED", "STOPPED") and exp["metricVal"] != 9999.99
        metric = f"{exp['metricVal']:.6g}" if has_value else "-"
        if exp["state"] == "RUNNING" and exp.get("latestMetricVal") is not None:
            metric = f"{exp['latestMetricVal']:.6g} @{exp['steps']}"  # the latest entry of a running trial
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in exp["values"].items())
        table.add_row(str(exp["id"]), exp["state"], metric, f"{exp.get('duration', 0):.1f}", params)
    return table


def watch(store, name: str, quiet: bool = False, poll: float = 0.5, check=None) -> dict[str, Any]:
    """Show a progress bar until the task ends; returns its final status.

    ``check``, when given, is called on every poll and raises if the services the task needs have died.
    """
    from openhpo.status import task_status

    status = task_status(store, name)
    total = status["algoDef"].get("maxJobNum", -1)
    total = int(total) if isinstance(total, (int, str)) and str(total).lstrip("-").isdigit() else -1
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[best]}"), console=console, disable=quiet, transient=False) as progress:
        bar = progress.add_task(name, total=total if total > 0 else None, best="")
        while True:
            status = task_status(store, name)
            best = status.get("best")
            best_text = f"best {best['metricVal']:.5g} (trial {best['id']})" if best else ""
            progress.update(bar, completed=status["complete"], best=f"running {status['running']}  {best_text}")
            if status["state"] in ("FINISHED", "FAILED", "STOPPED"):
                return status
            if check is not None:
                check()
            time.sleep(poll)


def cmd_run(args: argparse.Namespace) -> int:
    from broker.logs import configure_logging
    from broker.store import RedisStore
    from openhpo.local import LocalCluster, default_worker_count
    from hpo_core.errors import SpecError
    from openhpo.submission import check_algorithm, current_user, load_spec_file, submit
    from workers.code import pack_directory

    configure_logging("console", args.log_level)
    spec_path = Path(args.spec)
    body = load_spec_file(spec_path)
    from hpo_core.spec import TaskSpec

    # Reject a bad definition, algorithm settings or script path before anything starts.
    spec = TaskSpec.parse(body)
    check_algorithm(spec)
    code_dir = Path(args.code) if args.code else spec_path.resolve().parent
    if not code_dir.is_dir():
        raise SpecError("--code", "is not a directory", str(code_dir), "give the directory that holds the script")
    if spec.model.main:
        root = code_dir / spec.model.model_dir if spec.model.model_dir else code_dir
        if not (root / spec.model.main).is_file():
            raise SpecError("modelSpec.args", f"--model-main names no file in {root}", spec.model.main,
                            "name the training script relative to the code directory, or pass --code DIR")
    local_workers = args.workers or default_worker_count()
    if not args.broker and spec.model.min_workers > local_workers:
        raise SpecError("modelSpec.args --edt-options minWorkers", f"needs more workers than the {local_workers} "
                        "that this run starts, so no trial could ever start", spec.model.min_workers,
                        f"run with --workers {spec.model.min_workers} or more, or lower minWorkers")
    code = pack_directory(code_dir)

    if args.broker:
        store = RedisStore.from_url(args.broker, args.prefix)
        name = submit(store, body, code, current_user())
        console.print(f"submitted {name} to {args.broker}")
        status = watch(store, name, quiet=args.json)
        _print_results(status, args.json)
        return 0 if status["state"] == "FINISHED" else 1

    workers = args.workers or default_worker_count()
    cluster = LocalCluster(workers=workers, work_dir=Path(args.work_dir), key_prefix=args.prefix,
                           log_level=args.log_level)
    # Ctrl-C (SIGINT) and SIGTERM (kill, timeout, a CI cancel) both stop the task and shut the cluster down, so
    # no embedded Redis or worker outlives this command. The exit status is 128 + the signal's number.
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with cluster:
            console.print(f"local cluster: Redis {cluster.redis_url}, {workers} worker processes "
                          f"(worker log: {cluster.worker_log})")
            name = submit(cluster.store, body, code, current_user())
            try:
                status = watch(cluster.store, name, quiet=args.json, check=cluster.check_alive)
            except RuntimeError as exc:
                console.print(f"error: {exc}")
                return 1
            except KeyboardInterrupt:
                signum = received[0] if received else signal.SIGINT
                console.print(f"interrupted ({signal.Signals(signum).name}): stopping the task and shutting down")
                cluster.store.request_stop(name, force=True)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    from openhpo.status import task_status

                    status = task_status(cluster.store, name)
                    if status["state"] in ("FINISHED", "FAILED", "STOPPED") and status["running"] == 0:
                        break
                    time.sleep(0.2)
                _print_results(status, args.json, cluster.work_dir)
                return 128 + signum
            _print_results(status, args.json, cluster.work_dir)
            return 0 if status["state"] == "FINISHED" else 1
    except KeyboardInterrupt:
        # A signal while the cluster started or shut down: the cluster has closed itself on the way out.
        signum = received[0] if received else signal.SIGINT
        return 128 + signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_coordinator(args: argparse.Namespace) -> int:
    from broker.app import create_app
    from broker.coordinator import Coordinator
    from broker.logs import configure_logging
    from broker.settings import get_settings
    from broker.store import RedisStore

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    store = RedisStore.from_url(settings.redis_url, settings.key_prefix)
    coordinator = Coordinator(store, create_app(settings), settings, lock_ttl=settings.coordinator_lock_ttl)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    coordinator.run_forever(stop)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from broker.settings import get_settings

    settings = get_settings()
    concurrency = args.concurrency
    if concurrency is None:
        from openhpo.local import default_worker_count

        concurrency = default_worker_count()
    argv = ["worker", "--pool", "prefork", "--concurrency", str(concurrency), "-Q", settings.queue,
            "--loglevel", args.loglevel, "--without-gossip", "--without-mingle"]
    if args.hostname:
        argv += ["-n", args.hostname]
    from workers.tasks import app

    app.worker_main(argv)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from broker.logs import configure_logging
    from openhpo.api import ApiSettings, create_app

    settings = ApiSettings()
    configure_logging(settings.log_format, args.log_level or settings.log_level)
    app = create_app(settings, insecure_no_auth=args.insecure_no_auth)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"serving on {args.host}: tokens travel in clear text unless a TLS proxy is in front",
                      markup=False)
    # log_config=None keeps uvicorn's own loggers on the root handler that configure_logging set up.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=not args.no_access_log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openhpo", description="Distributed hyperparameter optimization for "
                                     "PyTorch training scripts (WMLA HPO compatible).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a search on this machine (embedded Redis and local workers) or on "
                         "--broker", description="Run a whole search locally and print the best hyperparameters.",
                         epilog="exit status: 0 the task FINISHED, 1 it FAILED or a service died, 2 the task "
                         "definition or an option is invalid, 130 interrupted with Ctrl-C, 143 ended by SIGTERM "
                         "(the task is STOPPED in both cases)")
    run.add_argument("spec", help="JSON task definition (WMLA body: modelSpec, algoDef, hyperParams)")
    run.add_argument("--code", help="directory holding the training script (default: the spec file's directory)")
    run.add_argument("--workers", type=int, default=None,
                     help="worker processes (default: number of GPUs, else CPU cores)")
    run.add_argument("--broker", help="submit to a running deployment's Redis (redis://HOST:PORT/DB) instead")
    run.add_argument("--prefix", default="openhpo", help="Redis key prefix (default: openhpo)")
    run.add_argument("--work-dir", default=".openhpo/work", help="where trial directories go "
                     "(default: .openhpo/work)")
    run.add_argument("--json", action="store_true", help="print the final status as JSON, without a progress bar")
    run.add_argument("--log-level", default="ERROR", help="log level of the local services' diagnostics on the "
                     "terminal (default: ERROR; failed trials are listed after the table either way)")
    run.set_defaults(func=cmd_run)

    coord = sub.add_parser("coordinator", help="run the coordinator service (settings from OPENHPO_* variables)")
    coord.set_defaults(func=cmd_coordinator)

    worker = sub.add_parser("worker", help="run a Celery worker with openhpo's app and options")
    worker.add_argument("--concurrency", type=int, default=None, help="trial slots (default: GPUs, else CPU cores)")
    worker.add_argument("--loglevel", default="INFO", help="Celery log level (default: INFO)")
    worker.add_argument("-n", "--hostname", default=None, help="Celery node name, e.g. gpu1@%%h")
    worker.set_defaults(func=cmd_worker)

    api = sub.add_parser("api", help="run the REST API server (token from OPENHPO_API_TOKEN)",
                         description="Serve the REST API with uvicorn. Settings come from OPENHPO_* variables; "
                         "the server refuses to start without OPENHPO_API_TOKEN or OPENHPO_API_USERS.")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; use 0.0.0.0 "
                     "in a container)")
    api.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    api.add_argument("--insecure-no-auth", action="store_true", help="accept requests without a token, every "
                     "caller acting as administrator; only for a machine that you alone use")
    api.add_argument("--log-level", default=None, help="log level (default: OPENHPO_LOG_LEVEL, else INFO)")
    api.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    api.set_defaults(func=cmd_api)

    from openhpo.cli_remote import add_remote_commands

    add_remote_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OpenHPOError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
