"""Compare Hyperband, ASHA and BOHB with full-budget search on a simulated multi-fidelity task.

The task imitates tuning a network over epochs. Six hyperparameters (learning rate, momentum, weight decay,
batch size, dropout, label smoothing) are mapped linearly, in each parameter's search coordinate (log for
``power``), onto the unit cube, and a configuration ``u`` trained for ``r`` epochs has the validation loss

    loss(u, r) = f(u) + c(u) * r ** -ALPHA + noise,

a power-law learning curve. ``f = 0.25 + 0.2 * (Hartmann6(u) - min Hartmann6)`` is the asymptote, and the
curve's height ``c(u)`` is larger for a small learning rate, a large batch and strong dropout, which converge
slowly. Low fidelities are therefore informative but biased: after one epoch they favour configurations that
converge fast over those that end best. The target is a loss at the full resource ``R`` that only the best
``--target-quantile`` of uniformly drawn configurations reach. The optimum of ``loss(u, R)`` is found
numerically, so the target can also be given as a regret.

The searchers run through the algorithm layer as the coordinator runs them, in an event-driven simulation of
``W`` workers. A trial with resource ``r`` occupies a worker for ``r`` time units (times a log-normal factor,
``--time-noise``). A worker requests a configuration from the searcher only when it is free, and every trial that
has not ended is passed to ``suggest`` as a RUNNING :class:`TrialView`. A promotion is a new trial with the larger
resource in its config, started as the searcher returns it. By default a promotion trains from scratch, as a
script without checkpoints does. With ``--resume`` it continues its parent's checkpoint and costs only the
extra epochs.

For each algorithm, worker count and seed, the run stops at the first ended trial whose noise-free loss is
within the target, or when the busy worker time reaches ``--budget`` times ``R``. It records the busy
worker time (the sum over workers of the time they trained) and the simulated wall time at that moment, and the
idle fraction ``1 - busy / (W * wall)``. Searcher compute is not simulated time: the real seconds each
``suggest`` call took are reported separately.

Writes ``<--name>.json`` (every run) into ``--out`` and prints a markdown table. Example::

    python benchmarks/hyperband.py --seeds 20 --workers 4 8 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo_core.algorithms import create_searcher  # noqa: E402
from hpo_core.algorithms.base import TrialView  # noqa: E402
from hpo_core.algorithms.hyperband import rung_resources  # noqa: E402
from hpo_core.records import TrialState  # noqa: E402
from hpo_core.space import SearchSpace  # noqa: E402
from hpo_core.spec import TaskSpec  # noqa: E402

#: Algorithms compared, by openhpo algorithm name. Random and Tpe train every trial with the full resource.
ALGORITHMS = ("Random", "Tpe", "Hyperband", "ASHA", "BOHB")
MULTI_FIDELITY = ("Hyperband", "ASHA", "BOHB")
RESOURCE_NAME = "epochs"

HYPER_PARAMS: list[dict[str, Any]] = [
    {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"},
    {"name": "momentum", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.5, "maxDbVal": 0.99},
    {"name": "weight_decay", "type": "Range", "dataType": "DOUBLE", "minDbVal": -6, "maxDbVal": -2, "power": "10"},
    {"name": "batch_size", "type": "Range", "dataType": "INT", "minIntVal": 4, "maxIntVal": 9, "power": "2"},
    {"name": "dropout", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.5},
    {"name": "label_smoothing", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.2},
]

# Learning curve constants: the asymptote's offset and scale, the exponent of the power law, and the default
# range of its height c(u). With them, one epoch adds 0.2 to 1.6 to the loss and 81 epochs add 0.02 to 0.18.
LOSS_FLOOR = 0.25
LOSS_SCALE = 0.2
ALPHA = 0.5
CURVE_HEIGHT = (0.2, 1.6)
# Uniform draws that turn --target-quantile into a loss: 200 of them fall below a 0.1% quantile.
QUANTILE_SAMPLES = 200_000


# --- the simulated task -------------------------------------------------------------------------------------------


class LearningCurveTask:
    """The multi-fidelity loss of the module docstring over :data:`HYPER_PARAMS`.

    Args:
        max_resource: the full resource ``R`` in epochs, at which the target is defined.
        loss_noise: the standard deviation of the Gaussian noise added to every reported loss.
        curve_height: the smallest and largest height ``c(u)``. Equal values give every configuration the same
            curve, so low fidelities rank configurations exactly as the full resource does (noise aside).
    """

    def __init__(self, max_resource: int, loss_noise: float, curve_height: Sequence[float] = CURVE_HEIGHT):
        from botorch.test_functions import Hartmann

        self.max_resource = max_resource
        self.loss_noise = loss_noise
        self.curve_min, self.curve_max = curve_height
        self.space = SearchSpace.from_wmla(HYPER_PARAMS)
        self._hartmann = Hartmann(dim=6)
        self._hartmann_min = float(self._hartmann.optimal_value)
        self._bounds = np.array([param.bounds() for param in self.space])

    def unit(self, config: dict[str, Any]) -> np.ndarray:
        """Map a configuration to the unit cube, linearly in each parameter's search coordinate."""
        coordinates = np.array([param.encode(config[param.name]) for param in self.space])
        low, high = self._bounds[:, 0], self._bounds[:, 1]
        return np.clip((coordinates - low) / (high - low), 0.0, 1.0)

    def curve(self, u: np.ndarray, resource: float | np.ndarray) -> np.ndarray:
        """Compute the noise-free loss of the rows of ``u`` (shape ``(n, 6)``) after ``resource`` epochs."""
        import torch

        hartmann = self._hartmann.evaluate_true(torch.as_tensor(u, dtype=torch.float64)).numpy()
        asymptote = LOSS_FLOOR + LOSS_SCALE * (hartmann - self._hartmann_min)
        # Small learning rate (u0), large batch (u3) and strong dropout (u4) converge slowly.
        slowness = 0.5 * (1.0 - u[:, 0]) + 0.3 * u[:, 3] + 0.2 * u[:, 4]
        height = self.curve_min + (self.curve_max - self.curve_min) * slowness
        return asymptote + height * np.power(resource, -ALPHA)

    def true_loss(self, config: dict[str, Any], resource: float) -> float:
        return float(self.curve(self.unit(config)[None, :], resource)[0])

    def observed_loss(self, config: dict[str, Any], resource: float, rng: np.random.Generator) -> float:
        return self.true_loss(config, resource) + self.loss_noise * float(rng.standard_normal())

    def optimum(self, starts: int = 64) -> float:
        """Minimise ``loss(u, R)`` over the unit cube from ``starts`` random points and Hartmann6's minimiser.

        The batch size is an integer, so the optimum over the search space can be slightly above this
        continuous minimum. Regrets against it are then slight overestimates.
        """
        from scipy.optimize import minimize

        rng = np.random.default_rng(0)
        points = [np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])]
        points += list(rng.random((starts, 6)))
        best = math.inf
        for start in points:
            result = minimize(lambda x: float(self.curve(x[None, :], self.max_resource)[0]), start,
                              method="L-BFGS-B", bounds=[(0.0, 1.0)] * 6)
            best = min(best, float(result.fun))
        return best

    def rank_correlations(self, resources: Sequence[int], best_fraction: float = 1.0,
                          samples: int = 200_000) -> dict[int, float]:
        """Return, per resource, the Spearman correlation between the losses there and at ``R``.

        The correlation is over the ``best_fraction`` of uniform draws, ranked by their loss at ``R``.
        """
        from scipy.stats import spearmanr

        u = np.random.default_rng(2).random((samples, 6))
        final = self.curve(u, self.max_resource)
        best = final <= np.quantile(final, best_fraction)
        return {r: float(spearmanr(self.curve(u[best], r), final[best]).statistic) for r in resources}

    def loss_quantile(self, quantile: float) -> float:
        """Estimate the ``quantile`` of ``loss(u, R)`` when ``u`` is drawn uniformly, as Random search draws it."""
        rng = np.random.default_rng(1)
        u = rng.random((QUANTILE_SAMPLES, 6))
        return float(np.quantile(self.curve(u, self.max_resource), quantile))


# --- the event-driven simulation ----------------------------------------------------------------------------------


@dataclass
class Settings:
    """Settings that every run of one benchmark shares.

    Attributes:
        max_resource: the full resource ``R``.
        eta: the reduction factor of Hyperband, ASHA and BOHB.
        target: the noise-free loss at which a run stops, reached.
        budget: the busy worker time at which a run stops, unreached, in simulated time units.
        time_noise: the standard deviation of the log of a trial's duration factor.
        loss_noise: the standard deviation of the noise on reported losses.
        resume: whether a promotion continues its parent and costs only the additional resource.
        iterations: passes over the brackets for Hyperband and BOHB. The default is large enough that the
            budget, not the searcher, ends a run.
        curve_height: the range of the learning curve's height, as :class:`LearningCurveTask` takes it.
    """

    max_resource: int
    eta: float
    target: float
    budget: float
    time_noise: float = 0.1
    loss_noise: float = 0.02
    resume: bool = False
    iterations: int = 1000
    curve_height: tuple[float, float] = CURVE_HEIGHT


class MultiFidelityTask(Protocol):
    """Interface of a simulated task: the noise-free and the reported loss after ``resource`` units."""

    def true_loss(self, config: dict[str, Any], resource: float) -> float: ...

    def observed_loss(self, config: dict[str, Any], resource: float, rng: np.random.Generator) -> float: ...


@dataclass
class RunResult:
    """One simulated run of one algorithm.

    Attributes:
        reached: whether an ended trial's noise-free loss reached the target.
        target_resource: the resource of the first trial that reached the target, or ``None``.
        worker_time: busy worker time when the run stopped (at the target, the budget or exhaustion).
        wall_time: simulated wall time when the run stopped.
        idle_fraction: ``1 - worker_time / (workers * wall_time)``.
        trials: trials started.
        short_suggestions: ``suggest`` calls that returned fewer configurations than free workers, while the
            searcher was not exhausted.
        idle_while_proposing: simulated worker time spent idle after a ``suggest`` call that filled every
            free worker. It is positive only if the simulator itself is wrong.
        exhausted: whether the searcher reported that it will propose nothing more.
        suggest_seconds: real seconds spent in ``suggest``, per call.
        resources: the resource of every trial, in start order.
        trials_view: every trial as the searcher last saw it, kept only when requested.
    """

    algorithm: str
    workers: int
    seed: int
    reached: bool
    target_resource: int | None
    worker_time: float
    wall_time: float
    idle_fraction: float
    trials: int
    short_suggestions: int
    idle_while_proposing: float
    exhausted: bool
    suggest_seconds: list[float] = field(default_factory=list)
    resources: list[Any] = field(default_factory=list)
    trials_view: list[TrialView] = field(default_factory=list)


def make_spec(algorithm: str, workers: int, seed: int, settings: Settings) -> TaskSpec:
    """Build the WMLA task definition that the coordinator would parse for this run."""
    params = {"RandomSeed": str(seed)}
    if algorithm in MULTI_FIDELITY:
        params.update({"ResourceName": RESOURCE_NAME, "ResourceValue": str(settings.max_resource),
                       "eta": repr(settings.eta)})
    if algorithm in ("Hyperband", "BOHB"):
        params["Iterations"] = str(settings.iterations)
    return TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": algorithm, "objectiveMetric": "loss", "objective": "minimize",
                    "maxJobNum": -1, "maxParalleJobNum": workers,
                    "algoParams": [{"name": name, "value": value} for name, value in params.items()]},
        "hyperParams": HYPER_PARAMS,
    })


def simulate(task: MultiFidelityTask, algorithm: str, workers: int, seed: int, settings: Settings,
             keep_trials: bool = False) -> RunResult:
    """Run one search with ``workers`` simulated workers until the target, the budget or exhaustion.

    Raises:
        ValueError: the searcher proposed a resource that is not a positive ``int``.
    """
    searcher = create_searcher(make_spec(algorithm, workers, seed, settings))
    rng = np.random.default_rng([seed, workers, ALGORITHMS.index(algorithm)])
    trials: list[TrialView] = []
    resources: list[Any] = []
    running: list[tuple[float, int]] = []  # heap of (end time, trial id)
    now = busy = 0.0
    free = workers
    exhausted = reached = False
    target_resource = None
    short_suggestions = 0
    idle_while_proposing = 0.0
    suggest_seconds: list[float] = []
    # Whether the last suggest call returned fewer configurations than there were free workers.
    last_call_short = False

    while True:
        if free and not exhausted:
            started = time.perf_counter()
            suggestion = searcher.suggest(free, trials)
            suggest_seconds.append(time.perf_counter() - started)
            exhausted = suggestion.exhausted
            last_call_short = len(suggestion.configs) < free and not exhausted
            short_suggestions += last_call_short
            for config, meta in zip(suggestion.configs, suggestion.metas):
                duration = _start_trial(trials, resources, dict(config), dict(meta), settings, rng)
                heapq.heappush(running, (now + duration, trials[-1].id))
                free -= 1
        if not running:
            break

        end = running[0][0]
        active = workers - free
        if busy + active * (end - now) >= settings.budget:
            now += (settings.budget - busy) / active
            busy = settings.budget
            break
        if free and not last_call_short and not exhausted:
            idle_while_proposing += free * (end - now)
        busy += active * (end - now)
        now = end

        # Every trial that ends at this instant ends before the free workers request more.
        while running and running[0][0] <= now:
            _, trial_id = heapq.heappop(running)
            view = trials[trial_id]
            resource = resources[trial_id]
            loss = task.observed_loss(view.config, resource, rng)
            trials[trial_id] = dataclasses.replace(view, state=TrialState.FINISHED, loss=loss)
            free += 1
            if not reached and task.true_loss(view.config, resource) <= settings.target:
                reached = True
                target_resource = resource
        if reached:
            break

    wall = now if now > 0 else 1.0
    return RunResult(algorithm=algorithm, workers=workers, seed=seed, reached=reached,
                     target_resource=target_resource, worker_time=busy, wall_time=now,
                     idle_fraction=1.0 - busy / (workers * wall), trials=len(trials),
                     short_suggestions=short_suggestions,
                     idle_while_proposing=idle_while_proposing, exhausted=exhausted,
                     suggest_seconds=suggest_seconds, resources=resources,
                     trials_view=trials if keep_trials else [])


def _start_trial(trials: list[TrialView], resources: list[Any], config: dict[str, Any], meta: dict[str, Any],
                 settings: Settings, rng: np.random.Generator) -> float:
    """Append a RUNNING trial and return how long it occupies its worker."""
    resource = config.get(RESOURCE_NAME, settings.max_resource)
    if not isinstance(resource, int) or isinstance(resource, bool) or resource < 1:
        raise ValueError(f"trial {len(trials)} has resource {resource!r}; searchers must propose a positive int")
    work = float(resource)
    parent = meta.get("parent")
    if settings.resume and isinstance(parent, int):
        work -= resources[parent]
    trials.append(TrialView(len(trials), config, TrialState.RUNNING, meta=meta))
    resources.append(resource)
    return work * math.exp(settings.time_noise * float(rng.standard_normal()))


# --- running and reporting ----------------------------------------------------------------------------------------


def run_one(job: tuple[str, int, int, Settings]) -> dict[str, Any]:
    """Run one simulation in a worker process and return its result as JSON-serialisable data."""
    import torch

    torch.set_num_threads(1)
    algorithm, workers, seed, settings = job
    task = LearningCurveTask(settings.max_resource, settings.loss_noise, settings.curve_height)
    result = simulate(task, algorithm, workers, seed, settings)
    record = dataclasses.asdict(result)
    record.pop("trials_view")
    resources = record.pop("resources")
    record["trials_at_full_resource"] = sum(1 for r in resources if r == settings.max_resource)
    calls = record.pop("suggest_seconds")
    record["suggest_calls"] = len(calls)
    record["suggest_ms_mean"] = 1000.0 * float(np.mean(calls)) if calls else 0.0
    return record


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Return the 25th, 50th and 75th percentiles, counting a run that did not reach the target as infinite."""
    ordered = np.sort(np.asarray(values, dtype=float))
    out = []
    for q in (0.25, 0.5, 0.75):
        position = q * (len(ordered) - 1)
        low, high = ordered[int(math.floor(position))], ordered[int(math.ceil(position))]
        out.append(float(high) if math.isinf(high) else float(low + (high - low) * (position - math.floor(position))))
    return out[0], out[1], out[2]


def summarise(runs: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Aggregate the runs per worker count and algorithm, with medians relative to Random's."""
    rows = []
    for workers in sorted({run["workers"] for run in runs}):
        reference = None
        for algorithm in ALGORITHMS:
            group = [run for run in runs if run["workers"] == workers and run["algorithm"] == algorithm]
            if not group:
                continue
            times = {kind: [run[kind] if run["reached"] else math.inf for run in group]
                     for kind in ("worker_time", "wall_time")}
            row = {
                "workers": workers, "algorithm": algorithm, "seeds": len(group),
                "reached": sum(run["reached"] for run in group),
                # Runs whose first trial within the target trained with less than the full resource.
                "reached_below_full": sum(run["reached"] and run["target_resource"] < settings.max_resource
                                          for run in group),
                "worker_time": quartiles(times["worker_time"]), "wall_time": quartiles(times["wall_time"]),
                "idle_fraction": quartiles([run["idle_fraction"] for run in group]),
                "full_trials": float(np.median([run["trials_at_full_resource"] for run in group])),
                "suggest_ms": float(np.mean([run["suggest_ms_mean"] for run in group])),
                "short_suggestions": int(sum(run["short_suggestions"] for run in group)),
            }
            if algorithm == "Random":
                reference = times
            if reference is not None:
                for kind in ("worker_time", "wall_time"):
                    row[f"{kind}_speedup"] = _ratio(quartiles(reference[kind])[1], row[kind][1])
                    if algorithm != "Random":
                        row[f"{kind}_speedup_90"] = bootstrap_speedup(reference[kind], times[kind])
            rows.append(row)
    return rows


def bootstrap_speedup(reference: Sequence[float], values: Sequence[float], resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """Estimate a 90% interval of ``median(reference) / median(values)`` by resampling the seeds of each.

    A run that did not reach the target counts as infinite, so a resampled ratio can be 0 or infinite. Ratios of
    two infinite medians are left out.
    """
    rng = np.random.default_rng(seed)
    reference_array, values_array = np.asarray(reference, dtype=float), np.asarray(values, dtype=float)
    ratios = []
    for _ in range(resamples):
        numerator = np.median(rng.choice(reference_array, len(reference_array)))
        denominator = np.median(rng.choice(values_array, len(values_array)))
        if not (math.isinf(numerator) and math.isinf(denominator)):
            ratios.append(numerator / denominator)
    if not ratios:
        return math.nan, math.nan
    return (float(np.percentile(ratios, 5, method="lower")), float(np.percentile(ratios, 95, method="higher")))


def _ratio(reference: float, value: float) -> float | None:
    """Return ``reference / value``, or ``None`` when either median did not reach the target."""
    if math.isinf(reference) or math.isinf(value):
        return None
    return reference / value


def _fmt(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:,.0f}"


def _fmt_speedup(row: dict[str, Any], kind: str) -> str:
    ratio = row.get(f"{kind}_speedup")
    low, high = row.get(f"{kind}_speedup_90", (math.nan, math.nan))
    text = "n/a" if ratio is None else f"{ratio:.2f}x"
    if math.isfinite(low) or math.isfinite(high):
        text += f" ({low:.2g}-{high:.2g})"
    return text


def _fmt_range(stats: tuple[float, float, float]) -> str:
    return f"{_fmt(stats[1])} [{_fmt(stats[0])}, {_fmt(stats[2])}]"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Render the summary as markdown: times in epochs, each a median with its interquartile range.

    A speed-up is Random's median time to the target divided by the algorithm's, followed by its bootstrap 90%
    interval.
    """
    lines = ["| W | algorithm | reached (below R) | worker time to target | speed-up | wall time to target "
             "| speed-up | idle fraction | full-R trials | suggest (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        idle = row["idle_fraction"]
        lines.append(
            f"| {row['workers']} | {row['algorithm']} | {row['reached']}/{row['seeds']} ({row['reached_below_full']}) "
            f"| {_fmt_range(row['worker_time'])} | {_fmt_speedup(row, 'worker_time')} "
            f"| {_fmt_range(row['wall_time'])} | {_fmt_speedup(row, 'wall_time')} "
            f"| {100 * idle[1]:.1f}% [{100 * idle[0]:.1f}, {100 * idle[2]:.1f}] "
            f"| {row['full_trials']:.0f} | {row['suggest_ms']:.2f} |")
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per algorithm and worker count")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (seeds are offset .. offset+N-1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8], help="simulated worker counts")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--max-resource", type=int, default=81, help="full resource R, in epochs (default 81)")
    parser.add_argument("--eta", type=float, default=3.0, help="reduction factor (default 3)")
    parser.add_argument("--target-quantile", type=float, default=0.01,
                        help="the target is the loss at R that this fraction of uniform draws reaches (default 0.01)")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="busy worker time at which a run stops, in multiples of R (default 600)")
    parser.add_argument("--time-noise", type=float, default=0.1,
                        help="standard deviation of the log of each trial's duration factor (default 0.1)")
    parser.add_argument("--loss-noise", type=float, default=0.02,
                        help="standard deviation of the noise on each reported loss (default 0.02)")
    parser.add_argument("--curve-height", type=float, nargs=2, default=list(CURVE_HEIGHT), metavar=("MIN", "MAX"),
                        help="range of the learning curve's height c(u); equal values make low fidelities "
                             "unbiased (default 0.2 1.6)")
    parser.add_argument("--resume", action="store_true",
                        help="promotions continue their parent and cost only the additional epochs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs executed at once (processes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="folder for the JSON output (default benchmarks/out)")
    parser.add_argument("--name", default="hyperband", help="file name stem of the output")
    args = parser.parse_args(argv)
    program_started = time.perf_counter()
    if not 0 < args.target_quantile < 1:
        parser.error(f"--target-quantile must be in (0, 1), got {args.target_quantile}")

    task = LearningCurveTask(args.max_resource, args.loss_noise, args.curve_height)
    optimum = task.optimum()
    target = task.loss_quantile(args.target_quantile)
    settings = Settings(max_resource=args.max_resource, eta=args.eta, target=target,
                        budget=args.budget * args.max_resource, time_noise=args.time_noise,
                        loss_noise=args.loss_noise, resume=args.resume, curve_height=tuple(args.curve_height))
    low_resources = rung_resources(args.max_resource, args.eta)[:-1]
    correlations = {"all": task.rank_correlations(low_resources),
                    "best 5%": task.rank_correlations(low_resources, best_fraction=0.05)}
    print(f"optimum of loss(u, R={args.max_resource}) = {optimum:.4f}; target {target:.4f} "
          f"(regret {target - optimum:.4f}, reached by {args.target_quantile:.2%} of uniform draws)", file=sys.stderr)
    for group, by_resource in correlations.items():
        print(f"Spearman correlation with the loss at R, {group} of uniform draws, by resource: "
              + ", ".join(f"{r}: {rho:.2f}" for r, rho in by_resource.items()), file=sys.stderr)

    # BOHB and TPE are the slowest to propose, so they start first and the pool ends with the short runs.
    order = sorted(args.algorithms, key=lambda name: name not in ("BOHB", "Tpe"))
    jobs = [(algorithm, workers, seed, settings)
            for algorithm in order for workers in args.workers
            for seed in range(args.seed_offset, args.seed_offset + args.seeds)]
    started = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, run in enumerate(pool.map(run_one, jobs), 1):
            runs.append(run)
            print(f"[{i}/{len(jobs)}] {run['algorithm']} W={run['workers']} seed {run['seed']}: "
                  f"{'reached' if run['reached'] else 'not reached'} after {run['worker_time']:.0f} worker time, "
                  f"{run['trials']} trials", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    rows = summarise(runs, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"command": " ".join(["python", "benchmarks/hyperband.py"] + sys.argv[1:]),
                "machine": machine_description(), "elapsed_seconds": elapsed,
                "settings": dataclasses.asdict(settings), "optimum": optimum,
                "target_regret": target - optimum, "rank_correlations": correlations, "summary": rows,
                "runs": runs}
    (args.out / f"{args.name}.json").write_text(json.dumps(document, indent=1))
    print(markdown_table(rows))
    setup_seconds = started - program_started
    print(f"\n{len(jobs)} runs in {elapsed / 60:.1f} min, {args.jobs} at a time on a machine with {os.cpu_count()} "
          f"CPUs, after {setup_seconds:.0f} s spent finding the optimum and the target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
