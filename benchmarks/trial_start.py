"""Start time of a trial whose script imports torch, from a warm interpreter and from a fresh one.

Runs N trials of a script that imports torch and writes one result, on one local worker with an embedded Redis,
once with ``OPENHPO_WARM_IMPORTS=torch`` (trials forked from the worker's warm interpreter) and once with it empty
(a fresh interpreter per trial), and reports the median time from the worker's claim to the recorded result.

Usage: python benchmarks/trial_start.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from broker.logs import configure_logging  # noqa: E402
from openhpo.local import LocalCluster  # noqa: E402
from openhpo.submission import submit  # noqa: E402
from workers.code import pack_directory  # noqa: E402

SCRIPT = """\
import json, os
import torch
json.dump([{"loss": float(torch.zeros(1).sum())}], open(os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json"), "w"))
"""


def run(trials: int, warm_imports: str) -> float:
    os.environ["OPENHPO_WARM_IMPORTS"] = warm_imports
    body = {"modelSpec": {"args": "--model-main start.py"},
            "algoDef": {"algorithm": "Random", "maxJobNum": trials, "maxParalleJobNum": 1,
                        "objectiveMetric": "loss", "objective": "minimize"},
            "hyperParams": [{"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0, "maxDbVal": 1}]}
    with tempfile.TemporaryDirectory() as tmp:
        code_dir = Path(tmp, "start")
        code_dir.mkdir()
        (code_dir / "start.py").write_text(SCRIPT)
        with LocalCluster(workers=1, work_dir=Path(tmp, "work"), key_prefix="openhpo-start") as cluster:
            time.sleep(8)  # the worker's warm interpreter imports torch before the clock starts
            name = submit(cluster.store, body, pack_directory(code_dir), "bench")
            while cluster.store.get_task(name).state.value in ("SUBMITTED", "RUNNING"):
                time.sleep(0.2)
            done = [t for t in cluster.store.get_trials(name) if t.state.value == "FINISHED"]
    return statistics.median(t.ended - t.started for t in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20,
                        help="trials to run in each of the two rounds, warm and cold, on one worker "
                             "(default: %(default)s)")
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    result = {"trials": args.trials,
              "warm_median_s": round(run(args.trials, "torch"), 3),
              "cold_median_s": round(run(args.trials, ""), 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
