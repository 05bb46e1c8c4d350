"""Elastic distributed trials on the digits DDP example: time per epoch with 1 and 2 members, and recovery time.

Every run is one trial of ``examples/digits_ddp`` with fixed hyperparameters. It runs on real Celery workers (one
process each, concurrency 1) and a coordinator, on the Redis at ``--redis`` under a key prefix of its own. The
workers use openhpo's default heartbeat (2 s) and lease (3.5 s). Runs:

* ``plain``: ``maxWorkers=1``, a plain trial: one process, no process group, on 1 worker;
* ``1 member``: ``maxWorkers=2,minWorkers=1`` on 1 worker, so the gang forms with one member and the script runs
  under torch elastic with a gloo group of one;
* ``2 members``: ``maxWorkers=2,minWorkers=2`` on 2 workers;
* ``kill member`` and ``kill host``: ``maxWorkers=2,minWorkers=1`` on 2 workers, with every epoch padded to
  ``--epoch-seconds``. After ``--kill-after`` epochs the worker that runs the non-host member (or the gang's host)
  is killed with SIGKILL, and the survivor goes on alone from the last checkpoint.

Epoch times come from rank 0's log (the script prints the time since training started after every epoch); the
median over epochs 2 to N is reported. The recovery time is the time from the SIGKILL until the next epoch appears
in the trial record, less one padded epoch: detecting the loss, restarting the training process, the rendezvous
and loading the checkpoint. Usage::

    python benchmarks/edt.py --epochs 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edt.store import GangStore, gang_id  # noqa: E402
from tests.conftest import Deployment, wait_for  # noqa: E402

DIGITS_DDP = REPO / "examples" / "digits_ddp"
CONFIG = {"learning_rate": 0.002, "hidden": 128, "dropout": 0.1, "optimizer": "adam", "batch_size": 32}
#: openhpo's default timing, instead of the test deployment's shorter one.
TIMING = {"OPENHPO_HEARTBEAT_INTERVAL": "2", "OPENHPO_LEASE_TTL": "3.5", "OPENHPO_POLL_INTERVAL": "0.5",
          "OMP_NUM_THREADS": "1"}
_EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+: .* ([0-9.]+)s$")


def _body(edt_options: str, epochs: int, epoch_seconds: float) -> dict[str, Any]:
    args = f"--exec-start edtPyTorch --model-main train.py --epochs {epochs}"
    if edt_options:
        args += f" --edt-options {edt_options}"
    if epoch_seconds:
        args += f" --epoch-seconds {epoch_seconds}"
    params = []
    for key, value in CONFIG.items():
        data_type = "STR" if isinstance(value, str) else "INT" if isinstance(value, int) else "DOUBLE"
        params.append({"name": key, "dataType": data_type, "fixedVal": str(value)})
    return {"modelSpec": {"args": args},
            "algoDef": {"algorithm": "ExperimentGridSearch", "maxJobNum": 1, "maxParalleJobNum": 1,
                        "objectiveMetric": "accuracy", "objective": "maximize"},
            "experiments": [{"id": 0, "hyperParams": params}]}


def _epoch_times(result_dir: Path) -> list[float]:
    """Durations of the epochs after the first, from every log of the attempt (rank 0 prints them)."""
    times: list[float] = []
    for log in sorted(result_dir.glob("log/**/stdout")):
        previous = None
        for line in log.read_text(errors="replace").splitlines():
            match = _EPOCH_LINE.match(line.strip())
            if not match:
                continue
            elapsed = float(match.group(2))
            if previous is not None and elapsed > previous:
                times.append(elapsed - previous)
            previous = elapsed
    return times


def run_once(redis_url: str, label: str, workers: int, edt_options: str, epochs: int, epoch_seconds: float = 0.0,
             kill: str | None = None, kill_after: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edt-bench-") as tmp:
        deployment = Deployment(Path(tmp), redis_url)
        try:
            for _ in range(workers):
                deployment.start_worker(concurrency=1, **TIMING)
            deployment.start_coordinator(**TIMING)
            time.sleep(3)  # let the workers connect before the clock starts
            started = time.monotonic()
            name = deployment.submit(_body(edt_options, epochs, epoch_seconds), DIGITS_DDP)
            recovery = None
            if kill:
                recovery = _kill_and_time(deployment, name, kill, kill_after, epoch_seconds)
            state = deployment.wait_task(name, timeout=600)
            wall = time.monotonic() - started
            trial = deployment.store.get_trial(name, 0)
            result_dir = Path(deployment.store.trial_extras(name, 0)["result_dir"])
            epoch_times = _epoch_times(result_dir)
            result = {"run": label, "state": state, "trial_state": trial.state.value, "accuracy": trial.metric,
                      "trial_seconds": (trial.ended or 0) - (trial.started or 0), "task_seconds": wall,
                      "epoch_median_s": statistics.median(epoch_times) if epoch_times else None,
                      "epochs_timed": len(epoch_times), "recovery_s": recovery,
                      "world_sizes": sorted({s.get("world_size", 1) for s in trial.steps})}
        finally:
            deployment.close()
    print(json.dumps(result), flush=True)
    return result


def _kill_and_time(deployment: Deployment, name: str, victim: str, kill_after: int, epoch_seconds: float) -> float:
    gangs, gid = GangStore(deployment.store), gang_id(name, 0, 1)

    def launched() -> dict[int, dict[str, Any]] | None:
        members = {s: m for s, m in gangs.members(gid).items() if m.get("launcher_pid")}
        return members if len(members) == 2 else None

    members = wait_for(launched, 120, what="two launched members")
    wait_for(lambda: len(deployment.store.get_trial(name, 0).steps) >= kill_after, 300,
             interval=0.05, what=f"{kill_after} epochs")
    host = gangs.read(gid).host
    slot = host if victim == "host" else next(s for s in members if s != host)
    status = Path(f"/proc/{members[slot]['pid']}/status").read_text()
    parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    worker = next(w for w in deployment.workers if w.pid == parent)
    seen = len(deployment.store.get_trial(name, 0).steps)
    killed_at = time.monotonic()
    deployment.kill(worker)
    wait_for(lambda: len(deployment.store.get_trial(name, 0).steps) > seen, 300, interval=0.05,
             what="an epoch after the kill")
    return time.monotonic() - killed_at - epoch_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("OPENHPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11"),
                        help="Redis URL to use, under a key prefix of its own (default: database 11 on 127.0.0.1)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the timing runs (default: 40)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default: 3)")
    parser.add_argument("--epoch-seconds", type=float, default=0.5,
                        help="padded epoch length of the kill runs, in seconds (default: 0.5)")
    parser.add_argument("--kill-after", type=int, default=5, help="epochs before the kill (default: 5)")
    args = parser.parse_args()

    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                      "load_average": os.getloadavg()}), flush=True)
    results = []
    for _ in range(args.repeats):
        results.append(run_once(args.redis, "plain", 1, "maxWorkers=1", args.epochs))
        results.append(run_once(args.redis, "1 member", 1, "maxWorkers=2,minWorkers=1", args.epochs))
        results.append(run_once(args.redis, "2 members", 2, "maxWorkers=2,minWorkers=2", args.epochs))
        for victim in ("member", "host"):
            results.append(run_once(args.redis, f"kill {victim}", 2, "maxWorkers=2,minWorkers=1", 20,
                                    args.epoch_seconds, kill=victim, kill_after=args.kill_after))
    print()
    print(summary(results))


def _median_text(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    text = f"{statistics.median(values):.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f} to {max(values):.{digits}f})"
    return text


def summary(results: list[dict[str, Any]]) -> str:
    """Format the medians (and ranges) per kind of run as a Markdown table, over the runs whose trial finished."""
    lines = ["| run | finished runs | epoch median (ms) | trial (s) | recovery (s) | best accuracy |",
             "|---|---|---|---|---|---|"]
    for label in ("plain", "1 member", "2 members", "kill member", "kill host"):
        runs = [r for r in results if r["run"] == label]
        rows = [r for r in runs if r["trial_state"] == "FINISHED"]
        epochs = [] if label.startswith("kill") else [r["epoch_median_s"] * 1000 for r in rows if r["epoch_median_s"]]
        recovery = [r["recovery_s"] for r in rows if r["recovery_s"] is not None]
        trial = [r["trial_seconds"] for r in rows]
        accuracy = [r["accuracy"] for r in rows if r["accuracy"] is not None]
        lines.append(f"| {label} | {len(rows)} of {len(runs)} | {_median_text(epochs)} | {_median_text(trial)} | "
                     f"{_median_text(recovery)} | {_median_text(accuracy, 4)} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
