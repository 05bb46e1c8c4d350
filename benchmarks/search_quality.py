"""Compare the search quality of openhpo's searchers with Optuna's and hyperopt's on standard test functions.

Each run minimises one function from ``botorch.test_functions`` (Branin, Hartmann6, Rosenbrock 5-D, Levy 5-D,
all with a known optimum) over a WMLA ``hyperParams`` space of DOUBLE ranges for a fixed number of trials. It
records the simple regret (best value found minus the optimum) after every trial. openhpo's searchers are driven
through the algorithm layer, the way the coordinator drives them: a loop that calls ``suggest`` and reports each
result. The ``-b4`` variants keep four trials running at once: each step finishes the oldest running trial and
asks for one more configuration while three are still pending.

Writes ``search_quality.json`` (every regret curve) and ``search_quality.png`` (median regret against trials,
with the interquartile band) into the output folder, and prints a markdown table of median and interquartile
regret at the reported budgets.

Example::

    python benchmarks/search_quality.py --seeds 20 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo_core.algorithms import create_searcher  # noqa: E402
from hpo_core.algorithms.base import TrialView  # noqa: E402
from hpo_core.records import TrialState  # noqa: E402
from hpo_core.spec import TaskSpec  # noqa: E402

FUNCTIONS = ("Branin", "Hartmann6", "Rosenbrock5", "Levy5")
METHODS = ("Random", "TPE", "Bayesian", "optuna-TPE", "optuna-TPE-independent", "optuna-GP", "hyperopt-TPE")
PARALLEL_METHODS = ("TPE-b4", "Bayesian-b4")
# openhpo algorithm name of each openhpo method, and the number of trials kept running at once.
_OPENHPO = {"Random": ("Random", 1), "TPE": ("Tpe", 1), "Bayesian": ("Bayesian", 1),
            "TPE-b4": ("Tpe", 4), "Bayesian-b4": ("Bayesian", 4)}


@dataclass(frozen=True)
class Problem:
    name: str
    function: Any
    optimum: float
    bounds: list[tuple[float, float]]

    def __call__(self, x: list[float]) -> float:
        import torch

        return float(self.function.evaluate_true(torch.tensor([x], dtype=torch.float64)).item())

    def hyper_params(self) -> list[dict[str, Any]]:
        return [{"name": f"x{i}", "type": "Range", "dataType": "DOUBLE", "minDbVal": low, "maxDbVal": high}
                for i, (low, high) in enumerate(self.bounds)]


def make_problem(name: str) -> Problem:
    from botorch.test_functions import Branin, Hartmann, Levy, Rosenbrock

    function = {"Branin": lambda: Branin(), "Hartmann6": lambda: Hartmann(dim=6),
                "Rosenbrock5": lambda: Rosenbrock(dim=5), "Levy5": lambda: Levy(dim=5)}[name]()
    bounds = [(float(low), float(high)) for low, high in function.bounds.T.tolist()]
    return Problem(name, function, float(function.optimal_value), bounds)


# --- one run of each method ---------------------------------------------------------------------------------------

def run_openhpo(problem: Problem, algorithm: str, batch: int, budget: int, seed: int,
                algo_params: dict[str, str] | None = None) -> list[float]:
    """Drive an openhpo searcher for ``budget`` trials, keeping ``batch`` trials running; return the values."""
    params = {"RandomSeed": str(seed), **(algo_params or {})}
    spec = TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": algorithm, "objectiveMetric": "loss", "objective": "minimize",
                    "maxJobNum": budget, "maxParalleJobNum": batch,
                    "algoParams": [{"name": name, "value": value} for name, value in params.items()]},
        "hyperParams": problem.hyper_params(),
    })
    searcher = create_searcher(spec)
    names = spec.space.names
    trials: list[TrialView] = []
    values: list[float] = []
    running: list[int] = []
    while len(values) < budget:
        want = min(batch - len(running), budget - len(trials))
        if want > 0:
            suggestion = searcher.suggest(want, trials)
            for config in suggestion.configs:
                trials.append(TrialView(len(trials), config, TrialState.RUNNING))
                running.append(trials[-1].id)
        # Finish the oldest running trial.
        trial_id = running.pop(0)
        config = trials[trial_id].config
        value = problem([config[name] for name in names])
        trials[trial_id] = TrialView(trial_id, config, TrialState.FINISHED, value)
        values.append(value)
    return values


def run_optuna(problem: Problem, sampler_name: str, budget: int, seed: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if sampler_name == "optuna-TPE":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif sampler_name == "optuna-TPE-independent":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=False)
    else:
        sampler = optuna.samplers.GPSampler(seed=seed)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    values: list[float] = []

    def objective(trial) -> float:
        x = [trial.suggest_float(f"x{i}", low, high) for i, (low, high) in enumerate(problem.bounds)]
        values.append(problem(x))
        return values[-1]

    study.optimize(objective, n_trials=budget)
    return values


def run_hyperopt(problem: Problem, budget: int, seed: int) -> list[float]:
    from hyperopt import Trials, fmin, hp, tpe

    space = [hp.uniform(f"x{i}", low, high) for i, (low, high) in enumerate(problem.bounds)]
    values: list[float] = []

    def objective(x) -> float:
        values.append(problem(list(x)))
        return values[-1]

    fmin(objective, space, algo=tpe.suggest, max_evals=budget, trials=Trials(),
         rstate=np.random.default_rng(seed), show_progressbar=False)
    return values


def run_one(task: tuple[str, str, int, int]) -> dict[str, Any]:
    method, function_name, seed, budget = task
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    logging.getLogger("hyperopt").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    problem = make_problem(function_name)
    start = time.perf_counter()
    if method in _OPENHPO:
        algorithm, batch = _OPENHPO[method]
        values = run_openhpo(problem, algorithm, batch, budget, seed)
    elif method.startswith("optuna"):
        values = run_optuna(problem, method, budget, seed)
    elif method == "hyperopt-TPE":
        values = run_hyperopt(problem, budget, seed)
    else:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS + PARALLEL_METHODS}")
    seconds = time.perf_counter() - start
    regret = np.minimum.accumulate(np.asarray(values) - problem.optimum)
    return {"method": method, "function": function_name, "seed": seed, "seconds": seconds,
            "regret": [max(float(r), 0.0) for r in regret]}


# --- reporting ------------------------------------------------------------------------------------------------------

def summarise(runs: list[dict[str, Any]], budgets: list[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """Median and quartiles of the regret per method, function and budget."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        table.setdefault(run["method"], {}).setdefault(run["function"], {"curves": [], "seconds": []})
        cell = table[run["method"]][run["function"]]
        cell["curves"].append(run["regret"])
        cell["seconds"].append(run["seconds"])
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method, by_function in table.items():
        for function_name, cell in by_function.items():
            curves = np.asarray(cell["curves"])
            entry: dict[str, Any] = {"seeds": len(curves), "mean_seconds_per_run": float(np.mean(cell["seconds"]))}
            for budget in budgets:
                if budget <= curves.shape[1]:
                    q25, median, q75 = np.percentile(curves[:, budget - 1], [25, 50, 75])
                    entry[str(budget)] = {"median": float(median), "q25": float(q25), "q75": float(q75)}
            summary.setdefault(method, {})[function_name] = entry
    return summary


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]], functions: list[str], budgets: list[int]) -> str:
    header = "| method | " + " | ".join(f"{f} @{b}" for f in functions for b in budgets) + " |"
    lines = [header, "|---" * (1 + len(functions) * len(budgets)) + "|"]
    for method, by_function in summary.items():
        cells = []
        for function_name in functions:
            for budget in budgets:
                stats = by_function.get(function_name, {}).get(str(budget))
                if stats is None:
                    cells.append("")
                    continue
                cells.append(f"{_fmt(stats['median'])} [{_fmt(stats['q25'])}, {_fmt(stats['q75'])}]")
        seeds = sorted({entry["seeds"] for entry in by_function.values()})
        lines.append(f"| {method} ({'/'.join(str(s) for s in seeds)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def plot(runs: list[dict[str, Any]], functions: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(functions), figsize=(4.2 * len(functions), 3.6), squeeze=False)
    methods = list(dict.fromkeys(run["method"] for run in runs))
    for ax, function_name in zip(axes[0], functions):
        for method in methods:
            curves = np.asarray([run["regret"] for run in runs
                                 if run["method"] == method and run["function"] == function_name])
            if curves.size == 0:
                continue
            q25, median, q75 = np.percentile(curves, [25, 50, 75], axis=0)
            trials = np.arange(1, curves.shape[1] + 1)
            style = "--" if method.startswith(("optuna", "hyperopt")) else "-"
            (line,) = ax.plot(trials, median, style, label=method, linewidth=1.4)
            ax.fill_between(trials, q25, q75, color=line.get_color(), alpha=0.12)
        ax.set_yscale("log")
        ax.set_title(function_name)
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("median simple regret")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds per method and function")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (seeds are offset .. offset+N-1)")
    parser.add_argument("--gp-seeds", type=int, default=None,
                        help="fewer seeds for the GP methods (Bayesian, optuna-GP), which are slow; default --seeds")
    parser.add_argument("--budget", type=int, default=100, help="trials per run")
    parser.add_argument("--report", type=int, nargs="+", default=[50, 100], help="budgets reported in the table")
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=FUNCTIONS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + PARALLEL_METHODS)
    parser.add_argument("--parallel", action="store_true", help="also run the batch-of-4 openhpo variants")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs executed at once (processes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="folder for search_quality.json and search_quality.png")
    parser.add_argument("--name", default="search_quality", help="file name stem of the outputs")
    args = parser.parse_args(argv)

    methods = list(args.methods) + (list(PARALLEL_METHODS) if args.parallel else [])
    gp_seeds = args.seeds if args.gp_seeds is None else min(args.gp_seeds, args.seeds)
    tasks = []
    # The slow GP runs go first so that the process pool ends with the short ones.
    for method in sorted(methods, key=lambda m: "Bayesian" not in m and "GP" not in m):
        seeds = gp_seeds if ("Bayesian" in method or "GP" in method) else args.seeds
        for function_name in args.functions:
            for seed in range(args.seed_offset, args.seed_offset + seeds):
                tasks.append((method, function_name, seed, args.budget))

    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, run in enumerate(pool.map(run_one, tasks), 1):
            runs.append(run)
            print(f"[{i}/{len(tasks)}] {run['method']} {run['function']} seed {run['seed']}: "
                  f"regret {run['regret'][-1]:.4g} in {run['seconds']:.1f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    order = {m: i for i, m in enumerate(METHODS + PARALLEL_METHODS)}
    runs.sort(key=lambda r: (order[r["method"]], r["function"], r["seed"]))
    summary = summarise(runs, args.report)
    summary = {m: summary[m] for m in sorted(summary, key=order.__getitem__)}
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    document = {"command": " ".join(["python", "benchmarks/search_quality.py"] + sys.argv[1:]),
                "machine": machine, "elapsed_seconds": elapsed, "budget": args.budget,
                "summary": summary, "runs": runs}
    (args.out / f"{args.name}.json").write_text(json.dumps(document, indent=1))
    plot(runs, args.functions, args.out / f"{args.name}.png")
    print(markdown_table(summary, args.functions, args.report))
    print(f"\n{len(tasks)} runs in {elapsed / 60:.1f} min on {machine['cpus']} CPUs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
