"""Per-trial overhead of openhpo beyond the user's process.

Runs N trivial trials (a script that only writes ``val_dict_list.json``) on W local Celery worker processes with an
embedded Redis, then reports throughput and the median overhead per trial:

* slot time: task wall time x W / N, the time one worker slot spends per trial;
* bare process: median wall time of the same script started with subprocess, outside openhpo;
* overhead: slot time minus bare process, split into in-worker time (claim to result, minus the process) and the
  gap between trials (result to the next claim: coordinator, Redis and Celery).

By default trials are forked from the workers' warm interpreters (``OPENHPO_WARM_IMPORTS=torch``), which skips
the interpreter start too; ``--cold`` starts a fresh interpreter per trial, which is what "beyond the user's
process" compares against the bare process.

Usage: python benchmarks/overhead.py --trials 500 --workers 2 [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from broker.logs import configure_logging  # noqa: E402
from broker.store import RedisStore  # noqa: E402
from openhpo.local import LocalCluster  # noqa: E402
from openhpo.submission import submit  # noqa: E402
from workers.code import pack_directory  # noqa: E402

SCRIPT = REPO / "tests" / "scripts" / "trivial.py"


def bare_process_seconds(runs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text('{"x": 1.0}')
        env = dict(os.environ, RESULT_DIR=tmp)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-u", str(SCRIPT)], cwd=tmp, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500,
                        help="number of trivial trials to run, which is the task's maxJobNum (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2,
                        help="Celery worker processes, which is also the task's maxParalleJobNum "
                             "(default: %(default)s)")
    parser.add_argument("--cold", action="store_true",
                        help="start a fresh interpreter per trial instead of forking the workers' warm one")
    args = parser.parse_args()
    os.environ["OPENHPO_WARM_IMPORTS"] = "" if args.cold else "torch"
    configure_logging("console", "WARNING")

    bare = bare_process_seconds(40)
    body = {
        "modelSpec": {"args": "--model-main trivial.py"},
        "algoDef": {"algorithm": "Random", "maxJobNum": args.trials, "maxParalleJobNum": args.workers,
                    "objectiveMetric": "loss", "objective": "minimize"},
        "hyperParams": [{"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0, "maxDbVal": 1}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        code_dir = Path(tmp, "bench")
        code_dir.mkdir()
        (code_dir / "trivial.py").write_text(SCRIPT.read_text())
        with LocalCluster(workers=args.workers, work_dir=Path(tmp, "work"), key_prefix="openhpo-bench") as cluster:
            store: RedisStore = cluster.store
            time.sleep(8)  # let the worker pool and its warm interpreters start before the clock runs
            name = submit(store, body, pack_directory(code_dir), "bench")
            while store.get_task(name).state.value in ("SUBMITTED", "RUNNING"):
                time.sleep(0.2)
            task = store.get_task(name)
            trials = store.get_trials(name)

    wall = task.ended - task.started
    finished = [t for t in trials if t.state.value == "FINISHED"]
    slot = wall * args.workers / len(trials)
    in_worker = statistics.median((t.ended - t.started) for t in finished) - bare
    by_worker: dict[str, list] = {}
    for trial in sorted(finished, key=lambda t: t.started):
        by_worker.setdefault(trial.worker, []).append(trial)
    gaps = [b.started - a.ended for runs in by_worker.values() for a, b in zip(runs, runs[1:])]
    result = {
        "mode": "cold" if args.cold else "warm",
        "trials": len(trials), "finished": len(finished), "workers": args.workers,
        "wall_s": round(wall, 2), "trials_per_s": round(len(trials) / wall, 1),
        "bare_process_ms": round(bare * 1000, 1), "slot_ms_per_trial": round(slot * 1000, 1),
        "overhead_ms": round((slot - bare) * 1000, 1),
        "in_worker_overhead_ms_median": round(in_worker * 1000, 1),
        "gap_between_trials_ms_median": round(statistics.median(gaps) * 1000, 1) if gaps else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
