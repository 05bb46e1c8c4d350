"""Measure how long one ``suggest`` call takes as the history grows.

The history is synthetic: finished trials with random configurations of an 8-parameter space that mixes every
parameter kind (continuous, log-scale, INT range, step grid, INT and STR lists). Their loss is a smooth bowl
centred at 30% of each parameter's range. The searcher object is kept between calls, as the coordinator keeps
it, and each size is timed over several calls that each see one more finished trial, so the time includes
encoding only the newest trial. A separate "cold" figure times the first call of a fresh searcher, which encodes
the whole history.

Example::

    python benchmarks/suggest_latency.py --algorithm Tpe --sizes 100 1000 --repeats 20
    python benchmarks/suggest_latency.py --algorithm Bayesian --sizes 50 200 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo_core.algorithms import create_searcher  # noqa: E402
from hpo_core.algorithms.base import TrialView  # noqa: E402
from hpo_core.records import TrialState  # noqa: E402
from hpo_core.spec import TaskSpec  # noqa: E402

HYPER_PARAMS: list[dict[str, Any]] = [
    {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -5, "maxDbVal": -1, "power": "10"},
    {"name": "momentum", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.5, "maxDbVal": 0.99},
    {"name": "dropout", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.5, "step": "0.05"},
    {"name": "weight_decay", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.01},
    {"name": "epochs", "type": "Range", "dataType": "INT", "minIntVal": 5, "maxIntVal": 200},
    {"name": "hidden", "type": "Range", "dataType": "INT", "minIntVal": 4, "maxIntVal": 10, "power": "2"},
    {"name": "batch_size", "type": "Discrete", "dataType": "INT", "discreteIntVal": [16, 32, 64, 128, 256]},
    {"name": "optimizer", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam", "adamw"]},
]


def make_spec(algorithm: str, parallel: int) -> TaskSpec:
    return TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": algorithm, "objectiveMetric": "loss", "objective": "minimize",
                    "maxParalleJobNum": parallel, "algoParams": [{"name": "RandomSeed", "value": "1"}]},
        "hyperParams": HYPER_PARAMS,
    })


def bowl(spec: TaskSpec, config: dict[str, Any]) -> float:
    """Compute the squared distance from 30% of each internal coordinate's range, scaled to the unit cube."""
    total = 0.0
    for param, x in zip(spec.space, spec.space.encode(config)):
        low, high = param.bounds()
        total += ((x - low) / (high - low) - 0.3) ** 2 if high > low else 0.0
    return total


def history(spec: TaskSpec, size: int, seed: int = 0) -> list[TrialView]:
    rng = random.Random(seed)
    configs = [spec.space.sample(rng) for _ in range(size)]
    return [TrialView(i, config, TrialState.FINISHED, bowl(spec, config)) for i, config in enumerate(configs)]


def time_suggest(algorithm: str, size: int, repeats: int, batch: int) -> dict[str, Any]:
    spec = make_spec(algorithm, batch)
    trials = history(spec, size + repeats)
    searcher = create_searcher(spec)
    start = time.perf_counter()
    searcher.suggest(batch, trials[:size])
    cold = time.perf_counter() - start
    warm = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        searcher.suggest(batch, trials[:size + i])
        warm.append(time.perf_counter() - start)
    return {"algorithm": algorithm, "trials": size, "batch": batch, "cold_ms": cold * 1e3,
            "median_ms": float(np.median(warm)) * 1e3, "p90_ms": float(np.percentile(warm, 90)) * 1e3,
            "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", default="Tpe", help="openhpo algorithm name (Tpe, Bayesian, Random)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="finished trials in the history")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per size, after one cold call")
    parser.add_argument("--batch", type=int, default=1, help="configurations requested per call")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    rows = [time_suggest(args.algorithm, size, args.repeats, args.batch) for size in args.sizes]
    print(f"| algorithm | finished trials | batch | median ms | p90 ms | cold ms |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['algorithm']} | {row['trials']} | {row['batch']} | {row['median_ms']:.1f} | "
              f"{row['p90_ms']:.1f} | {row['cold_ms']:.1f} |")
    if args.json is not None:
        machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
