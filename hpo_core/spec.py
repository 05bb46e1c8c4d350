"""The task definition: WMLA's submit body (``modelSpec``, ``algoDef``, ``hyperParams``, ``experiments``).

Parsing is lenient where WMLA clients vary (enum case, numbers written as strings, ``maxParalleJobNum`` or
``maxParalleJob``) and strict everywhere else: each rejection is a :class:`SpecError` that names the field, the
value and the fix.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from hpo_core.errors import SpecError, misspelling_hint
from hpo_core.records import Objective
from hpo_core.space import SearchSpace

#: Built-in algorithms, by the lower-case name a request may use.
BUILTIN_ALGORITHMS = {
    "random": "Random",
    "tpe": "Tpe",
    "bayesian": "Bayesian",
    "hyperband": "Hyperband",
    "asha": "ASHA",
    "bohb": "BOHB",
    "experimentgridsearch": "ExperimentGridSearch",
}

#: Task names become Redis keys and directory names, so they are restricted to a safe alphabet.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ADDITIONAL_STRATEGIES = ("minimize", "maximize", "latest")
# Flags of dlicmd.py that describe the launch; every other flag passes through to the user's script.
_LAUNCH_FLAGS_WITH_VALUE = {"--exec-start", "--model-main", "--model-dir", "--cs-datastore-meta", "--python-version",
                            "--gpuPerWorker", "--workerDeviceNum", "--edt-options", "--appName", "--debug-level",
                            "--conda-env-name", "--workerMemory", "--workerNum", "--numWorker"}


def check_name(name: Any, field_name: str = "hpoName") -> str:
    # fullmatch, because "$" in match() also accepts a trailing newline.
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(field_name, "must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or "
                        "digit", name, "choose a name such as Admin-hpo-1 or leave it out to get one generated")
    return name


@dataclass(frozen=True)
class ModelSpec:
    """How to launch one trial.

    Either ``main`` (``--model-main`` in WMLA's ``args``) with pass-through ``script_args``, or a plain
    ``command`` line run in the model directory.
    """

    args: str = ""
    main: str | None = None
    model_dir: str | None = None
    exec_start: str | None = None
    script_args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    #: Elastic width of a trial (``--edt-options maxWorkers=N,minWorkers=M``); 1 and 1 for a plain trial.
    min_workers: int = 1
    max_workers: int = 1
    gpus_per_worker: int | None = None
    sig_name: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> "ModelSpec":
        if raw is None:
            raise SpecError("modelSpec", "is missing", fix='give "modelSpec": {"args": "--model-main train.py"}')
        if not isinstance(raw, Mapping):
            raise SpecError("modelSpec", "must be an object", raw, 'write {"args": "--model-main train.py ..."}')
        args = raw.get("args", "")
        command_raw = raw.get("command")
        if not isinstance(args, str):
            raise SpecError("modelSpec.args", "must be a string of launch flags", args,
                            'write e.g. "--exec-start PyTorch --model-main train.py --epochs 3"')
        try:
            tokens = shlex.split(args)
        except ValueError as exc:
            raise SpecError("modelSpec.args", f"cannot be split into words ({exc})", args,
                            "close the quotes") from None
        values: dict[str, str] = {}
        script_args: list[str] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            flag, eq, inline = token.partition("=")
            if flag in _LAUNCH_FLAGS_WITH_VALUE:
                if eq:
                    values[flag] = inline
                    i += 1
                    continue
                if i + 1 >= len(tokens):
                    raise SpecError("modelSpec.args", f"{flag} needs a value", args, f"write {flag} VALUE")
                values[flag] = tokens[i + 1]
                i += 2
                continue
            script_args.append(token)
            i += 1

        command: tuple[str, ...] = ()
        if command_raw is not None:
            if isinstance(command_raw, str):
                command = tuple(shlex.split(command_raw))
            elif isinstance(command_raw, list) and all(isinstance(c, str) for c in command_raw):
                command = tuple(command_raw)
            if not command:
                raise SpecError("modelSpec.command", "must be a non-empty command line", command_raw,
                                'write e.g. "python train.py --epochs 3"')
        main = values.get("--model-main")
        if main is None and not command:
            if not script_args:
                raise SpecError("modelSpec.args", "names no script to run", args,
                                'add "--model-main train.py", or give a plain command line such as '
                                '"python train.py"')
            # No --model-main: the args are a plain command line.
            command, script_args = tuple(script_args), []
        if main is not None and (not main.strip() or main.startswith("/") or ".." in main.split("/")):
            raise SpecError("modelSpec.args", "--model-main must be a path inside the model directory", main,
                            "name the script relative to the model directory, e.g. train.py")
        model_dir = values.get("--model-dir")
        if model_dir is not None and (model_dir.startswith("/") or ".." in model_dir.split("/")):
            raise SpecError("modelSpec.args", "--model-dir must be a directory inside the uploaded code", model_dir,
                            "name the directory as it appears in the archive")

        min_workers, max_workers = 1, 1
        if "--edt-options" in values:
            min_workers, max_workers = _parse_edt_options(values["--edt-options"])
        for key in ("minWorkers", "maxWorkers"):
            if key in raw:
                value = _int_field(raw[key], f"modelSpec.{key}", minimum=1)
                if key == "minWorkers":
                    min_workers = value
                else:
                    max_workers = value
        if min_workers > max_workers:
            raise SpecError("modelSpec.minWorkers", f"is greater than maxWorkers ({max_workers})", min_workers,
                            "set minWorkers <= maxWorkers")
        gpu_flag = "--workerDeviceNum" if "--workerDeviceNum" in values else "--gpuPerWorker"
        gpus = values.get(gpu_flag)
        gpus_per_worker = _int_field(gpus, f"modelSpec.args {gpu_flag}", minimum=0) if gpus else None
        sig_name = raw.get("sigName")
        return cls(args=args, main=main, model_dir=model_dir, exec_start=values.get("--exec-start"),
                   script_args=tuple(script_args), command=command, min_workers=min_workers,
                   max_workers=max_workers, gpus_per_worker=gpus_per_worker,
                   sig_name=sig_name if isinstance(sig_name, str) else None)


def _parse_edt_options(text: str) -> tuple[int, int]:
    options: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise SpecError("modelSpec.args --edt-options", "must be key=value pairs", text,
                            "write e.g. --edt-options maxWorkers=2")
        options[key.strip()] = value.strip()
    max_workers = _int_field(options.get("maxWorkers", "1"), "modelSpec.args --edt-options maxWorkers", minimum=1)
    min_workers = _int_field(options.get("minWorkers", "1"), "modelSpec.args --edt-options minWorkers", minimum=1)
    if min_workers > max_workers:
        raise SpecError("modelSpec.args --edt-options minWorkers", f"is greater than maxWorkers ({max_workers})",
                        min_workers, "set minWorkers <= maxWorkers")
    return min_workers, max_workers


def _int_field(raw: Any, where: str, minimum: int | None = None, allow_unlimited: bool = False) -> int:
    fix = "give a whole number" + (f" >= {minimum}" if minimum is not None else "") + (
        ", or -1 for no limit" if allow_unlimited else "")
    if isinstance(raw, bool):
        raise SpecError(where, "must be an integer", raw, fix)
    try:
        value = float(raw) if isinstance(raw, (int, float, str)) else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value != int(value):
        raise SpecError(where, "must be an integer", raw, fix)
    result = int(value)
    if allow_unlimited and result == -1:
        return result
    if minimum is not None and result < minimum:
        rule = f"-1 or at least {minimum}" if allow_unlimited else f"at least {minimum}"
        raise SpecError(where, f"must be {rule}", raw, fix)
    return result


@dataclass(frozen=True)
class FixedExperiment:
    """One entry of ``experiments`` for ExperimentGridSearch."""

    id: int
    config: dict[str, Any]


@dataclass(frozen=True)
class TaskSpec:
    """A validated task definition."""

    name: str | None
    model: ModelSpec
    algorithm: str
    objective_metric: str
    objective: Objective
    max_jobs: int = -1
    max_parallel: int = 1
    max_run_time: int = -1
    algo_params: dict[str, str] = field(default_factory=dict)
    hyperband_eta: float | None = None
    additional_metrics: dict[str, str] = field(default_factory=dict)
    space: SearchSpace = field(default_factory=lambda: SearchSpace(()))
    experiments: tuple[FixedExperiment, ...] = ()
    #: How many times a trial whose worker was lost is started again.
    max_retries: int = 2
    #: Wall-clock limit of one trial attempt in seconds; 0 for none.
    trial_timeout: float = 0.0
    #: The request as submitted, echoed back by the API.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def seed(self) -> int | None:
        raw = self.algo_params.get("RandomSeed")
        return None if raw is None else _int_field(raw, "algoDef.algoParams.RandomSeed")

    @classmethod
    def parse(cls, body: Any) -> "TaskSpec":
        """Parse and validate a WMLA submit body (the ``data`` part, already decoded from JSON).

        Raises:
            SpecError: naming the field, the value and the fix.
        """
        if not isinstance(body, Mapping):
            raise SpecError("(body)", "must be a JSON object with modelSpec, algoDef and hyperParams", body,
                            "send the task definition as a JSON object")
        name = body.get("hpoName")
        if name is not None:
            check_name(name)
        model = ModelSpec.parse(body.get("modelSpec"))
        algo = body.get("algoDef")
        if not isinstance(algo, Mapping):
            raise SpecError("algoDef", "is missing or not an object", algo,
                            'give "algoDef": {"algorithm": "Tpe", "objectiveMetric": "loss", '
                            '"objective": "minimize", ...}')

        raw_algorithm = algo.get("algorithm")
        if not isinstance(raw_algorithm, str) or not raw_algorithm.strip():
            raise SpecError("algoDef.algorithm", "is missing", raw_algorithm,
                            f"use one of {sorted(set(BUILTIN_ALGORITHMS.values()))} or an installed plugin's name")
        algorithm = BUILTIN_ALGORITHMS.get(raw_algorithm.strip().lower(), raw_algorithm.strip())

        metric = algo.get("objectiveMetric")
        if metric is None:
            raise SpecError("algoDef.objectiveMetric", "is missing" + misspelling_hint(algo, "objectiveMetric"),
                            fix='name the key of val_dict_list.json entries to optimize, e.g. '
                            '"objectiveMetric": "loss"')
        if not isinstance(metric, str) or not metric.strip():
            raise SpecError("algoDef.objectiveMetric", "must name a key of val_dict_list.json entries", metric,
                            'write e.g. "objectiveMetric": "loss"')
        raw_objective = algo.get("objective", "minimize")
        try:
            objective = Objective(str(raw_objective).strip().lower())
        except ValueError:
            raise SpecError("algoDef.objective", "must be minimize or maximize", raw_objective,
                            'write "objective": "minimize" or "maximize"') from None

        max_jobs = _int_field(algo.get("maxJobNum", -1), "algoDef.maxJobNum", minimum=1, allow_unlimited=True)
        # WMLA spells it maxParalleJobNum, one WMLA document writes maxParalleJob, and users may spell it correctly.
        parallel_key = next((key for key in ("maxParalleJobNum", "maxParalleJob", "maxParallelJobNum") if key in algo),
                            "maxParalleJobNum")
        max_parallel = _int_field(algo.get(parallel_key, 1), f"algoDef.{parallel_key}", minimum=1)
        max_run_time = _int_field(algo.get("maxRunTime", -1), "algoDef.maxRunTime", minimum=1, allow_unlimited=True)
        max_retries = _int_field(algo.get("maxRetries", 2), "algoDef.maxRetries", minimum=0)
        timeout_raw = algo.get("trialTimeout", 0)
        try:
            trial_timeout = float(timeout_raw)
        except (TypeError, ValueError):
            raise SpecError("algoDef.trialTimeout", "must be a number of seconds", timeout_raw,
                            "give seconds, or 0 for no limit") from None
        if not trial_timeout >= 0:
            raise SpecError("algoDef.trialTimeout", "must be >= 0", timeout_raw, "give seconds, or 0 for no limit")

        algo_params = _parse_algo_params(algo.get("algoParams"))
        eta = algo.get("hyperbandEta")
        hyperband_eta = None
        if eta is not None and eta != "":
            try:
                hyperband_eta = float(eta)
            except (TypeError, ValueError):
                raise SpecError("algoDef.hyperbandEta", "must be a number", eta, "use e.g. 3") from None
            if not math.isfinite(hyperband_eta) or not hyperband_eta > 1:
                raise SpecError("algoDef.hyperbandEta", "must be greater than 1", eta, "use e.g. 3")

        additional = algo.get("additionalMetrics") or {}
        if not isinstance(additional, Mapping):
            raise SpecError("algoDef.additionalMetrics", "must be an object of metric: strategy", additional,
                            'write e.g. {"accuracy": "maximize"}')
        additional_metrics = {}
        for key, strategy in additional.items():
            strategy_text = str(strategy).strip().lower()
            # WMLA treats an unknown strategy as "latest".
            additional_metrics[str(key)] = strategy_text if strategy_text in _ADDITIONAL_STRATEGIES else "latest"

        experiments: tuple[FixedExperiment, ...] = ()
        if algorithm == "ExperimentGridSearch":
            experiments = _parse_experiments(body.get("experiments"))
            space = SearchSpace(())
        else:
            if body.get("hyperParams") is None:
                raise SpecError("hyperParams", "is missing" + misspelling_hint(body, "hyperParams"),
                                fix="give the search space as a list, or use "
                                '"algorithm": "ExperimentGridSearch" with "experiments"')
            space = SearchSpace.from_wmla(body.get("hyperParams"))
            if len(space) == 0:
                raise SpecError("hyperParams", "is empty", [], "list at least one parameter")

        spec = cls(name=name, model=model, algorithm=algorithm, objective_metric=metric.strip(),
                   objective=objective, max_jobs=max_jobs, max_parallel=max_parallel, max_run_time=max_run_time,
                   algo_params=algo_params, hyperband_eta=hyperband_eta, additional_metrics=additional_metrics,
                   space=space, experiments=experiments, max_retries=max_retries, trial_timeout=trial_timeout,
                   raw=dict(body))
        spec.seed  # noqa: B018 - validates RandomSeed early
        return spec


def _parse_algo_params(raw: Any) -> dict[str, str]:
    """Read ``algoParams``: a list of ``{"name", "value"}`` (WMLA) or a plain object; values become strings."""
    if raw is None or raw == "":
        return {}
    params: dict[str, str] = {}
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping) or "name" not in entry or "value" not in entry:
                raise SpecError(f"algoDef.algoParams[{i}]", "must be an object with name and value", entry,
                                'write {"name": "RandomSeed", "value": "7"}')
            items.append((entry["name"], entry["value"]))
    else:
        raise SpecError("algoDef.algoParams", "must be a list of {name, value} objects", raw,
                        'write [{"name": "RandomSeed", "value": "7"}]')
    for key, value in items:
        if not isinstance(key, str) or not key:
            raise SpecError("algoDef.algoParams", "has a parameter without a name", key, "name every parameter")
        if key in params:
            raise SpecError(f"algoDef.algoParams.{key}", "is given twice", value, "list each parameter once")
        if isinstance(value, (dict, list)) or value is None:
            raise SpecError(f"algoDef.algoParams.{key}", "must be a string or a number", value,
                            'write the value as a string, e.g. "0.25"')
        params[key] = value if isinstance(value, str) else (str(value).lower() if isinstance(value, bool)
                                                            else repr(value) if isinstance(value, float)
                                                            else str(value))
    return params


def _parse_experiments(raw: Any) -> tuple[FixedExperiment, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("experiments", "must be a non-empty list for ExperimentGridSearch", raw,
                        'list {"id": 1, "hyperParams": [{"name": ..., "dataType": ..., "fixedVal": ...}]} entries')
    out: list[FixedExperiment] = []
    seen_ids: set[int] = set()
    for i, entry in enumerate(raw):
        where = f"experiments[{i}]"
        if not isinstance(entry, Mapping):
            raise SpecError(where, "must be an object with id and hyperParams", entry, "see the WMLA format")
        exp_id = _int_field(entry.get("id", i), f"{where}.id", minimum=0)
        if exp_id in seen_ids:
            raise SpecError(f"{where}.id", "repeats an id", exp_id, "give every experiment its own id")
        seen_ids.add(exp_id)
        params = entry.get("hyperParams")
        if not isinstance(params, list) or not params:
            raise SpecError(f"{where}.hyperParams", "must be a non-empty list", params,
                            'list {"name": ..., "dataType": ..., "fixedVal": ...} entries')
        config: dict[str, Any] = {}
        for j, item in enumerate(params):
            item_where = f"{where}.hyperParams[{j}]"
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
                raise SpecError(item_where, "must be an object with a name", item, "give name, dataType, fixedVal")
            if item["name"] in config:
                raise SpecError(f"{item_where}.name", "repeats a parameter of this experiment", item["name"],
                                "give each parameter once per experiment")
            config[item["name"]] = _fixed_value(item, item_where)
        out.append(FixedExperiment(exp_id, config))
    return tuple(out)


def _fixed_value(item: Mapping[str, Any], where: str) -> Any:
    raw_data_type = item.get("dataType", "str")
    data_type = str(raw_data_type).strip().lower()
    if data_type not in ("str", "string", "int", "integer", "double", "float"):
        raise SpecError(f"{where}.dataType", "is not a known data type", raw_data_type,
                        'use "DOUBLE", "INT" or "STR"')
    raw = item.get("fixedVal")
    if raw is None:
        raise SpecError(f"{where}.fixedVal", "is missing", fix="give the value, e.g. \"0.1\"")
    if data_type in ("str", "string"):
        return str(raw)
    # A value that is not a number (true, "abc", a list) becomes NaN so the one check below rejects it.
    number = math.nan
    if not isinstance(raw, bool):
        try:
            number = float(raw)
        except (TypeError, ValueError):
            number = math.nan
    if not math.isfinite(number):
        raise SpecError(f"{where}.fixedVal", f"must be a finite number for dataType {raw_data_type}", raw,
                        "write a number, e.g. \"0.1\"")
    if data_type in ("int", "integer"):
        if number != int(number):
            raise SpecError(f"{where}.fixedVal", "must be an integer for dataType INT", raw, "write e.g. \"3\"")
        return int(number)
    return number
