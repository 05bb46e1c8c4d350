"""Compare the search quality of openhpo's searchers with Optuna's and hyperopt's on test functions and a model.

Each run minimises one function for a fixed number of trials and records, after every trial, the simple regret
(best value found minus the optimum) where the optimum is known, or else the best value found. Four functions come
from ``botorch.test_functions`` (Branin, Hartmann6, Rosenbrock 5-D, Levy 5-D) over a space of DOUBLE ranges, with
known optima. ``Digits`` is the validation cross-entropy of a small MLP trained on scikit-learn's digits for a
fixed number of epochs, over a mixed space (log-scaled floats, an INT range, discrete INT and STR lists), with no
known optimum. openhpo's searchers are driven through the algorithm layer, the way the coordinator drives them: a
loop that calls ``suggest`` and reports each result. Optuna and hyperopt receive the same space in their own
parameter kinds (log floats, ints, categoricals). The ``-b4`` variants keep four trials running at once: each step
finishes the oldest running trial and requests one more configuration while three are still pending.

Writes ``search_quality.json`` (every curve) and ``search_quality.png`` (the median curve against trials, with the
interquartile band) into the output folder, and prints a markdown table of the median and interquartile range at
the reported budgets. ``--from-json`` redraws the plot and the table from one or more earlier JSON files, merging
their runs, without running anything.

Example::

    python benchmarks/search_quality.py --seeds 20 --gp-seeds 10 --parallel --jobs 2
    python benchmarks/search_quality.py --seeds 3 --budget 30 --report 30 --methods Random TPE --jobs 2
    python benchmarks/search_quality.py --functions Digits --seeds 20 --gp-seeds 10 --jobs 1
"""

from __future__ import annotations

import argparse
import gzip
import functools
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
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo_core.algorithms import create_searcher  # noqa: E402
from hpo_core.algorithms.base import TrialView  # noqa: E402
from hpo_core.records import TrialState  # noqa: E402
from hpo_core.space import DataType, SearchSpace  # noqa: E402
from hpo_core.spec import TaskSpec  # noqa: E402

FUNCTIONS = ("Branin", "Hartmann6", "Rosenbrock5", "Levy5", "Digits")
METHODS = ("Random", "TPE", "Bayesian", "optuna-TPE", "optuna-TPE-independent", "optuna-GP", "hyperopt-TPE")
PARALLEL_METHODS = ("TPE-b4", "Bayesian-b4")
# openhpo algorithm name of each openhpo method, and the number of trials kept running at once.
_OPENHPO = {"Random": ("Random", 1), "TPE": ("Tpe", 1), "Bayesian": ("Bayesian", 1),
            "TPE-b4": ("Tpe", 4), "Bayesian-b4": ("Bayesian", 4)}


class Problem(Protocol):
    """A function to minimise over a WMLA search space. Its ``optimum`` is ``None`` where it is not known."""

    @property
    def name(self) -> str: ...

    @property
    def optimum(self) -> float | None: ...

    def hyper_params(self) -> list[dict[str, Any]]: ...

    def evaluate(self, config: dict[str, Any]) -> float: ...


@dataclass(frozen=True)
class TestFunction:
    """A botorch test function with a known optimum, over one DOUBLE range per input ``x0``, ``x1``, ..."""

    name: str
    function: Any
    optimum: float
    bounds: list[tuple[float, float]]

    def evaluate(self, config: dict[str, Any]) -> float:
        import torch

        x = [config[f"x{i}"] for i in range(len(self.bounds))]
        return float(self.function.evaluate_true(torch.tensor([x], dtype=torch.float64)).item())

    def hyper_params(self) -> list[dict[str, Any]]:
        return [{"name": f"x{i}", "type": "Range", "dataType": "DOUBLE", "minDbVal": low, "maxDbVal": high}
                for i, (low, high) in enumerate(self.bounds)]


#: Digits' value for a training run that diverged or ended worse than a uniform guess over the ten classes.
DIGITS_WORST_LOSS = math.log(10)


@dataclass(frozen=True)
class Digits:
    """A small MLP trained on scikit-learn's ``load_digits`` for a fixed number of epochs.

    The value is the cross-entropy on a fixed, stratified validation quarter of the 1,797 images. Cross-entropy
    rather than the error rate, because with 450 validation images the error moves in steps of 1/450 and many
    configurations tie, while the cross-entropy still orders them. The split, the initial weights, the dropout
    masks and the batch order are all seeded, so the value is a deterministic function of the configuration for
    a given torch build and thread count. The optimum is unknown, so runs record the best value found.
    """

    name: str = "Digits"
    optimum: float | None = None
    epochs: int = 4

    def hyper_params(self) -> list[dict[str, Any]]:
        """Return the space a user would tune: log-scaled rates, an INT width, a discrete batch size, an optimizer."""
        return [
            {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -0.5, "power": "10"},
            {"name": "hidden", "type": "Range", "dataType": "INT", "minIntVal": 16, "maxIntVal": 256},
            {"name": "weight_decay", "type": "Range", "dataType": "DOUBLE", "minDbVal": -6, "maxDbVal": -2,
             "power": "10"},
            {"name": "batch_size", "type": "Discrete", "dataType": "INT", "discreteIntVal": [32, 64, 128, 256]},
            {"name": "dropout", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.5},
            {"name": "optimizer", "type": "Discrete", "dataType": "STR", "discreteStrVal": ["sgd", "adam"]},
        ]

    def evaluate(self, config: dict[str, Any]) -> float:
        return digits_validation_loss(config, self.epochs)


@functools.lru_cache(maxsize=1)
def _digits_tensors() -> tuple[Any, Any, Any, Any]:
    """Load the digits once per process: training and validation inputs scaled to [0, 1], and their labels."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(images / 16.0, labels, test_size=0.25, random_state=0,
                                                      stratify=labels)
    return (torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train),
            torch.tensor(x_val, dtype=torch.float32), torch.tensor(y_val))


def digits_validation_loss(config: dict[str, Any], epochs: int) -> float:
    """Train the digits MLP with ``config`` for ``epochs`` epochs and return its validation cross-entropy.

    The result is capped at ``DIGITS_WORST_LOSS``, which is also returned when training diverges.
    """
    import torch
    from torch import nn

    x_train, y_train, x_val, y_val = _digits_tensors()
    batch_size = int(config["batch_size"])
    # A private random stream, so that the searchers' own use of torch's global generator is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, int(config["hidden"])), nn.ReLU(), nn.Dropout(float(config["dropout"])),
                              nn.Linear(int(config["hidden"]), 10))
        lr, weight_decay = float(config["lr"]), float(config["weight_decay"])
        if config["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
        elif config["optimizer"] == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        else:
            raise ValueError(f"invalid optimizer {config['optimizer']!r}, expected 'sgd' or 'adam'")
        batch_order = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(epochs):
            permutation = torch.randperm(len(x_train), generator=batch_order)
            for start in range(0, len(x_train), batch_size):
                rows = permutation[start:start + batch_size]
                loss = nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
                if not torch.isfinite(loss):
                    return DIGITS_WORST_LOSS
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            value = float(nn.functional.cross_entropy(model(x_val), y_val))
    return value if math.isfinite(value) and value < DIGITS_WORST_LOSS else DIGITS_WORST_LOSS


def make_problem(name: str) -> Problem:
    if name == "Digits":
        return Digits()
    from botorch.test_functions import Branin, Hartmann, Levy, Rosenbrock

    function = {"Branin": lambda: Branin(), "Hartmann6": lambda: Hartmann(dim=6),
                "Rosenbrock5": lambda: Rosenbrock(dim=5), "Levy5": lambda: Levy(dim=5)}[name]()
    bounds = [(float(low), float(high)) for low, high in function.bounds.T.tolist()]
    return TestFunction(name, function, float(function.optimal_value), bounds)


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
        value = problem.evaluate(config)
        trials[trial_id] = TrialView(trial_id, config, TrialState.FINISHED, value)
        values.append(value)
    return values


def suggest_optuna(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Draw a configuration of ``space`` from an Optuna trial, each parameter in Optuna's own kind.

    A power range becomes a log-scaled float or int, an INT range an int, a discrete list a categorical.

    Raises:
        ValueError: a range has both ``power`` and ``step``, which Optuna cannot express.
    """
    config: dict[str, Any] = {}
    for param in space:
        if param.is_categorical:
            config[param.name] = trial.suggest_categorical(param.name, list(param.choices))
            continue
        if param.power is not None and param.step is not None:
            raise ValueError(f"parameter {param.name!r} has both power and step, which Optuna cannot express. "
                             "Drop one of them")
        low, high = param.value_bounds()
        log = param.power is not None
        if param.data_type is DataType.INT:
            step = 1 if param.step is None else int(param.step)
            config[param.name] = trial.suggest_int(param.name, int(low), int(high), step=step, log=log)
        else:
            config[param.name] = trial.suggest_float(param.name, low, high, step=param.step, log=log)
    return config


def hyperopt_space(space: SearchSpace) -> list[Any]:
    """Express ``space`` as a list of hyperopt expressions, in the order of ``space.names``.

    A power range becomes ``loguniform`` (``qloguniform`` with q = 1, cast to int, for an INT), an INT range
    ``uniformint``, a DOUBLE range ``uniform`` and a discrete list ``choice``.

    Raises:
        ValueError: a range has a ``step``, which hyperopt's quantised distributions match only when the bounds
            are multiples of the step.
    """
    from hyperopt import hp
    from hyperopt.pyll import scope

    expressions = []
    for param in space:
        if param.is_categorical:
            expressions.append(hp.choice(param.name, list(param.choices)))
            continue
        if param.step is not None:
            raise ValueError(f"parameter {param.name!r} has a step, which this hyperopt adapter does not express; "
                             "use a Discrete list")
        # The bounds as written (exponents for a power range), not the grid indices that bounds() gives an INT.
        low, high = param.low, param.high
        if param.power is not None:
            scale = math.log(param.power)
            if param.data_type is DataType.INT:
                expressions.append(scope.int(hp.qloguniform(param.name, low * scale, high * scale, 1)))
            else:
                expressions.append(hp.loguniform(param.name, low * scale, high * scale))
        elif param.data_type is DataType.INT:
            expressions.append(hp.uniformint(param.name, low, high))
        else:
            expressions.append(hp.uniform(param.name, low, high))
    return expressions


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
    space = SearchSpace.from_wmla(problem.hyper_params())
    values: list[float] = []

    def objective(trial) -> float:
        values.append(problem.evaluate(suggest_optuna(trial, space)))
        return values[-1]

    study.optimize(objective, n_trials=budget)
    return values


def run_hyperopt(problem: Problem, budget: int, seed: int) -> list[float]:
    from hyperopt import Trials, fmin, tpe

    space = SearchSpace.from_wmla(problem.hyper_params())
    values: list[float] = []

    def objective(x) -> float:
        values.append(problem.evaluate(dict(zip(space.names, x))))
        return values[-1]

    fmin(objective, hyperopt_space(space), algo=tpe.suggest, max_evals=budget, trials=Trials(),
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
    best = np.minimum.accumulate(np.asarray(values))
    if problem.optimum is None:
        kind, curve = "best", best
    else:
        kind, curve = "regret", np.maximum(best - problem.optimum, 0.0)
    return {"method": method, "function": function_name, "seed": seed, "seconds": seconds,
            kind: [float(f"{float(v):.6g}") for v in curve]}


# --- reporting ------------------------------------------------------------------------------------------------------

#: Axis label of each curve a run can record: ``regret`` where the optimum is known, ``best`` where it is not.
CURVE_LABELS = {"regret": "simple regret", "best": "best value found"}


def curve_kind(run: dict[str, Any]) -> str:
    """Return which curve a run recorded, ``regret`` or ``best``."""
    return "regret" if "regret" in run else "best"


def summarise(runs: list[dict[str, Any]], budgets: list[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """Median and quartiles of the recorded curve (regret or best value) per method, function and budget."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        table.setdefault(run["method"], {}).setdefault(run["function"],
                                                       {"curves": [], "seconds": [], "kind": curve_kind(run)})
        cell = table[run["method"]][run["function"]]
        cell["curves"].append(run[cell["kind"]])
        cell["seconds"].append(run["seconds"])
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method, by_function in table.items():
        for function_name, cell in by_function.items():
            curves = np.asarray(cell["curves"])
            entry: dict[str, Any] = {"seeds": len(curves), "curve": cell["kind"],
                                     "mean_seconds_per_run": float(np.mean(cell["seconds"]))}
            for budget in budgets:
                if budget <= curves.shape[1]:
                    q25, median, q75 = np.percentile(curves[:, budget - 1], [25, 50, 75])
                    entry[str(budget)] = {"median": float(median), "q25": float(q25), "q75": float(q75)}
            summary.setdefault(method, {})[function_name] = entry
    return summary


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]], functions: list[str], budgets: list[int]) -> str:
    """Tabulate the median [q25, q75] per method and budget. A column of best values has "best" in its header."""
    kinds = {function_name: entry.get("curve", "regret")
             for by_function in summary.values() for function_name, entry in by_function.items()}
    header = "| method | " + " | ".join(f"{f}{' best' if kinds.get(f) == 'best' else ''} @{b}"
                                      for f in functions for b in budgets) + " |"
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
    """Draw the median curve of each method per function into ``path``. Without matplotlib, say so and skip it."""
    try:
        import matplotlib
    except ImportError:
        print(f"plot {path} not drawn: matplotlib is not installed. Install the bench extra with "
              "`.venv/bin/pip install -e '.[bench]'`", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 2 if len(functions) > 1 else 1
    rows = math.ceil(len(functions) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.0 * rows), squeeze=False)
    methods = list(dict.fromkeys(run["method"] for run in runs))
    colours = {method: f"C{i}" for i, method in enumerate(methods)}
    for ax, function_name in zip(axes.flat, functions):
        kind = next((curve_kind(run) for run in runs if run["function"] == function_name), "regret")
        tops_after_start: list[float] = []
        bottoms: list[float] = []
        for method in methods:
            curves = np.asarray([run[kind] for run in runs
                                 if run["method"] == method and run["function"] == function_name])
            if curves.size == 0:
                continue
            q25, median, q75 = np.percentile(curves, [25, 50, 75], axis=0)
            trials = np.arange(1, curves.shape[1] + 1)
            # openhpo's searchers are solid lines, the other libraries dashed.
            style = "--" if method.startswith(("optuna", "hyperopt")) else "-"
            ax.plot(trials, median, style, color=colours[method], label=f"{method} ({len(curves)})", linewidth=1.4)
            ax.fill_between(trials, q25, q75, color=colours[method], alpha=0.10)
            tops_after_start.append(float(q75[min(9, len(q75) - 1)]))
            bottoms.append(float(q25.min()))
        if kind == "regret":
            ax.set_yscale("log")
        elif tops_after_start:
            # Best values of the first few (random) trials can be far above the rest and would flatten the curves
            # that matter, so the axis ends at the highest upper quartile after trial 10.
            margin = 0.05 * (max(tops_after_start) - min(bottoms))
            ax.set_ylim(min(bottoms) - margin, max(tops_after_start) + margin)
        ax.set_title(function_name)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"{CURVE_LABELS[kind]} (median, IQR band)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(functions):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    # Five legend entries fit across two plots, three across one.
    legend_columns = min(len(labels), 5 if columns > 1 else 3)
    fig.legend(handles, labels, loc="lower center", ncol=legend_columns, fontsize=8,
               title="method (seeds)", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * math.ceil(len(labels) / legend_columns), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ordered_summary(runs: list[dict[str, Any]], budgets: list[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """Sort ``runs`` in place by method, function and seed, and summarise them with the methods in that order."""
    order = {m: i for i, m in enumerate(METHODS + PARALLEL_METHODS)}
    runs.sort(key=lambda r: (order[r["method"]], r["function"], r["seed"]))
    summary = summarise(runs, budgets)
    return {m: summary[m] for m in sorted(summary, key=order.__getitem__)}


def paired_table(runs: list[dict[str, Any]], method: str, baseline: str, functions: list[str],
                 budgets: list[int], resamples: int = 2000) -> str:
    """Compare two methods seed by seed, as a markdown table.

    For each function and budget the table gives three figures. The first is the ratio of the two medians,
    ``method`` over ``baseline``, where a value below 1 means that ``method`` found better values. The second is
    a 90% bootstrap interval of that ratio, which resamples the seeds that both methods ran, keeping each pair
    together. The third is the share of those seeds where ``method`` is strictly better.
    """
    rng = np.random.default_rng(0)
    header = "| function | budget | seeds | median ratio | 90% interval | seeds where better |"
    lines = [f"{method} against {baseline}", "", header, "|---|---|---|---|---|---|"]
    for function_name in functions:
        by_seed = {name: {run["seed"]: run[curve_kind(run)] for run in runs
                          if run["method"] == name and run["function"] == function_name}
                   for name in (method, baseline)}
        seeds = sorted(set(by_seed[method]) & set(by_seed[baseline]))
        if not seeds:
            continue
        for budget in budgets:
            ours = np.asarray([by_seed[method][seed][budget - 1] for seed in seeds])
            theirs = np.asarray([by_seed[baseline][seed][budget - 1] for seed in seeds])
            picks = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.median(ours) / np.median(theirs)
                ratios = np.median(ours[picks], axis=1) / np.median(theirs[picks], axis=1)
            low, high = np.nanpercentile(ratios, [5, 95])
            lines.append(f"| {function_name} | {budget} | {len(seeds)} | {ratio:.2f} | [{low:.2f}, {high:.2f}] | "
                         f"{100 * np.mean(ours < theirs):.0f}% |")
    return "\n".join(lines)


def replot(sources: list[Path], out: Path, name: str, budgets: list[int], compare: list[str] | None) -> int:
    """Merge the runs of JSON files that earlier runs wrote: write them as one JSON, redraw the plot, print tables.

    A run (method, function, seed) found in several files is taken from the last of them.
    """
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    for source in sources:
        text = gzip.decompress(source.read_bytes()).decode() if source.suffix == ".gz" else source.read_text()
        for run in json.loads(text)["runs"]:
            merged[(run["method"], run["function"], run["seed"])] = run
    runs = list(merged.values())
    functions = [f for f in FUNCTIONS if any(run["function"] == f for run in runs)]
    summary = ordered_summary(runs, budgets)
    out.mkdir(parents=True, exist_ok=True)
    document = {"command": " ".join(["python", "benchmarks/search_quality.py"] + sys.argv[1:]),
                "sources": [source.name for source in sources], "summary": summary, "runs": runs}
    (out / f"{name}.json").write_text(json.dumps(document, separators=(",", ":")))
    print(markdown_table(summary, functions, budgets))
    if compare:
        print("\n" + paired_table(runs, compare[0], compare[1], functions, budgets))
    plot(runs, functions, out / f"{name}.png")
    return 0


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
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="run nothing: redraw the plot and reprint the table from the runs of these earlier "
                             "JSON outputs (.json or .json.gz), merged, and write the merged runs as <name>.json")
    parser.add_argument("--compare", nargs=2, metavar=("METHOD", "BASELINE"), default=None,
                        help="also print a seed-by-seed comparison of two methods: the ratio of their medians "
                             "with a bootstrap interval, and the share of seeds where METHOD is better")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        return replot(args.from_json, args.out, args.name, args.report, args.compare)

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
                  f"{curve_kind(run)} {run[curve_kind(run)][-1]:.4g} in {run['seconds']:.1f} s", file=sys.stderr,
                  flush=True)
    elapsed = time.perf_counter() - started

    summary = ordered_summary(runs, args.report)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    document = {"command": " ".join(["python", "benchmarks/search_quality.py"] + sys.argv[1:]),
                "machine": machine, "elapsed_seconds": elapsed, "budget": args.budget,
                "summary": summary, "runs": runs}
    (args.out / f"{args.name}.json").write_text(json.dumps(document, separators=(",", ":")))
    print(markdown_table(summary, args.functions, args.report))
    if args.compare:
        print("\n" + paired_table(runs, args.compare[0], args.compare[1], args.functions, args.report))
    plot(runs, args.functions, args.out / f"{args.name}.png")
    print(f"\n{len(tasks)} runs in {elapsed / 60:.1f} min, {args.jobs} at a time on a machine with "
          f"{machine['cpus']} CPUs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
