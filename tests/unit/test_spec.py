"""Unit tests for hpo_core.spec: the WMLA submit body (TaskSpec) and the launch flags in modelSpec.args."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hpo_core.errors import SpecError
from hpo_core.records import Objective
from hpo_core.spec import ModelSpec, TaskSpec, check_name

BASE_BODY: dict[str, Any] = {
    "hpoName": "mnist-hpo",
    "modelSpec": {"sigName": "ig-gpu", "args": "--exec-start PyTorch --model-dir mnist --model-main train.py "
                                                "--epochs 3"},
    "algoDef": {"algorithm": "Random", "maxRunTime": 60, "maxJobNum": 8, "maxParalleJobNum": 4,
                "objectiveMetric": "loss", "objective": "minimize",
                "algoParams": [{"name": "RandomSeed", "value": "7"}]},
    "hyperParams": [
        {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"},
        {"name": "hidden", "type": "Range", "dataType": "INT", "minIntVal": 32, "maxIntVal": 256, "step": "32"},
        {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam"]},
    ],
}

GRID_BODY: dict[str, Any] = {
    "modelSpec": {"args": "--model-main train.py"},
    "algoDef": {"algorithm": "ExperimentGridSearch", "maxJobNum": 2, "objectiveMetric": "loss",
                "objective": "minimize"},
    "experiments": [
        {"id": 1, "hyperParams": [{"name": "learning_rate", "dataType": "DOUBLE", "fixedVal": "0.1"},
                                  {"name": "optimizer", "dataType": "STR", "fixedVal": "Adam"},
                                  {"name": "batch", "dataType": "INT", "fixedVal": "64"}]},
        {"id": 2, "hyperParams": [{"name": "learning_rate", "dataType": "DOUBLE", "fixedVal": "0.2"}]},
    ],
}


def make_body(base: dict[str, Any] = BASE_BODY, **algo: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``algoDef`` fields replaced; a value of ``None`` removes the field."""
    body = copy.deepcopy(base)
    for key, value in algo.items():
        if value is None:
            body["algoDef"].pop(key, None)
        else:
            body["algoDef"][key] = value
    return body


def with_args(args: str, **model: Any) -> dict[str, Any]:
    body = make_body()
    body["modelSpec"] = {"args": args, **model}
    return body


def parse_error(body: Any) -> SpecError:
    with pytest.raises(SpecError) as caught:
        TaskSpec.parse(body)
    return caught.value


def assert_spec_error(error: SpecError, field: str, value: Any = None) -> None:
    """Check that the error names the field path, the bad value (when there is one) and a fix."""
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    if value is not None:
        assert f"(got {value!r})" in str(error)
    assert error.fix
    assert f"Fix: {error.fix}" in str(error)


# --- the whole body ---------------------------------------------------------------------------------------------


def test_task_spec_parses_wmla_body():
    spec = TaskSpec.parse(make_body())

    assert spec.name == "mnist-hpo"
    assert spec.algorithm == "Random"
    assert spec.objective_metric == "loss"
    assert spec.objective is Objective.MINIMIZE
    assert spec.max_jobs == 8
    assert spec.max_parallel == 4
    assert spec.max_run_time == 60
    assert spec.algo_params == {"RandomSeed": "7"}
    assert spec.seed == 7
    assert spec.space.names == ["lr", "hidden", "opt"]
    assert spec.experiments == ()
    assert spec.raw == make_body()


def test_task_spec_applies_defaults():
    body = make_body(maxRunTime=None, maxJobNum=None, maxParalleJobNum=None, algoParams=None)
    del body["hpoName"]

    spec = TaskSpec.parse(body)

    assert spec.name is None
    assert spec.max_jobs == -1
    assert spec.max_parallel == 1
    assert spec.max_run_time == -1
    assert spec.algo_params == {}
    assert spec.seed is None


@pytest.mark.parametrize("key", ["maxParalleJobNum", "maxParalleJob", "maxParallelJobNum"])
def test_task_spec_reads_each_parallel_spelling(key):
    body = make_body(maxParalleJobNum=None)
    body["algoDef"][key] = 3

    spec = TaskSpec.parse(body)

    assert spec.max_parallel == 3


@pytest.mark.parametrize(("key", "value"), [("maxParalleJobNum", 0), ("maxParalleJob", "x"),
                                            ("maxParalleJob", -1)])
def test_task_spec_rejects_parallel_under_the_key_given(key, value):
    body = make_body(maxParalleJobNum=None)
    body["algoDef"][key] = value

    assert_spec_error(parse_error(body), f"algoDef.{key}", value)


@pytest.mark.parametrize(("raw", "expected"), [
    ("minimize", Objective.MINIMIZE), ("Minimize", Objective.MINIMIZE), ("MINIMIZE", Objective.MINIMIZE),
    ("maximize", Objective.MAXIMIZE), ("Maximize", Objective.MAXIMIZE), (" maximize ", Objective.MAXIMIZE),
])
def test_task_spec_reads_objective_in_any_case(raw, expected):
    assert TaskSpec.parse(make_body(objective=raw)).objective is expected


@pytest.mark.parametrize("raw", ["best", "", "min"])
def test_task_spec_rejects_unknown_objective(raw):
    assert_spec_error(parse_error(make_body(objective=raw)), "algoDef.objective", raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("tpe", "Tpe"), ("TPE", "Tpe"), ("Tpe", "Tpe"), ("random", "Random"), ("RANDOM", "Random"),
    ("hyperband", "Hyperband"), ("Bayesian", "Bayesian"), (" tpe ", "Tpe"), ("myPlugin", "myPlugin"),
])
def test_task_spec_reads_algorithm_in_any_case(raw, expected):
    assert TaskSpec.parse(make_body(algorithm=raw)).algorithm == expected


@pytest.mark.parametrize("raw", ["", "  ", 3, None])
def test_task_spec_rejects_missing_algorithm(raw):
    body = make_body(algorithm=raw) if raw is not None else make_body(algorithm=None)

    assert_spec_error(parse_error(body), "algoDef.algorithm", raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ([{"name": "RandomSeed", "value": 7}], {"RandomSeed": "7"}),
    ([{"name": "GoodRatio", "value": 0.25}], {"GoodRatio": "0.25"}),
    ([{"name": "Noiseless", "value": True}], {"Noiseless": "true"}),
    ([{"name": "eta", "value": "3"}, {"name": "ResourceName", "value": "epochs"}],
     {"eta": "3", "ResourceName": "epochs"}),
    ({"WarmUp": 5, "EICandidate": "30"}, {"WarmUp": "5", "EICandidate": "30"}),
    ([], {}),
    ("", {}),
], ids=["int", "float", "bool", "strings", "object-form", "empty-list", "empty-string"])
def test_task_spec_coerces_algo_params_to_strings(raw, expected):
    spec = TaskSpec.parse(make_body(algoParams=raw))

    assert spec.algo_params == expected
    assert all(type(value) is str for value in spec.algo_params.values())


@pytest.mark.parametrize(("raw", "field", "value"), [
    ([{"name": "RandomSeed"}], "algoDef.algoParams[0]", {"name": "RandomSeed"}),
    (["RandomSeed=7"], "algoDef.algoParams[0]", "RandomSeed=7"),
    ([{"name": "RandomSeed", "value": None}], "algoDef.algoParams.RandomSeed", None),
    ([{"name": "eta", "value": [3]}], "algoDef.algoParams.eta", [3]),
    ([{"name": "eta", "value": "3"}, {"name": "eta", "value": "4"}], "algoDef.algoParams.eta", "4"),
    ("RandomSeed=7", "algoDef.algoParams", "RandomSeed=7"),
    ([{"name": "RandomSeed", "value": "seven"}], "algoDef.algoParams.RandomSeed", "seven"),
    ([{"name": "RandomSeed", "value": "inf"}], "algoDef.algoParams.RandomSeed", "inf"),
], ids=["no-value", "not-an-object", "null-value", "list-value", "duplicate-name", "string", "seed-not-integer",
        "seed-infinite"])
def test_task_spec_rejects_invalid_algo_params(raw, field, value):
    assert_spec_error(parse_error(make_body(algoParams=raw)), field, value)


@pytest.mark.parametrize("raw", [0, -2, "x", 1.5, "1.5", "inf", float("inf"), float("nan"), True, [8]])
def test_task_spec_rejects_invalid_max_job_num(raw):
    error = parse_error(make_body(maxJobNum=raw))

    assert_spec_error(error, "algoDef.maxJobNum", raw)
    assert "-1 for no limit" in error.fix


@pytest.mark.parametrize(("raw", "expected"), [(-1, -1), ("-1", -1), (8, 8), ("8", 8), (8.0, 8), ("1e2", 100)])
def test_task_spec_reads_max_job_num(raw, expected):
    assert TaskSpec.parse(make_body(maxJobNum=raw)).max_jobs == expected


@pytest.mark.parametrize(("key", "raw"), [("maxRunTime", 0), ("maxRunTime", "1h"), ("maxRetries", -1),
                                          ("trialTimeout", -5), ("trialTimeout", "soon"), ("hyperbandEta", 1),
                                          ("hyperbandEta", "three"), ("hyperbandEta", "inf")])
def test_task_spec_rejects_invalid_limit(key, raw):
    assert_spec_error(parse_error(make_body(**{key: raw})), f"algoDef.{key}", raw)


@pytest.mark.parametrize("raw", [None, "", "   ", 5])
def test_task_spec_rejects_missing_objective_metric(raw):
    body = make_body(objectiveMetric=raw) if raw is not None else make_body(objectiveMetric=None)

    assert_spec_error(parse_error(body), "algoDef.objectiveMetric", raw)


def test_task_spec_strips_objective_metric():
    assert TaskSpec.parse(make_body(objectiveMetric=" accuracy ")).objective_metric == "accuracy"


@pytest.mark.parametrize("name", ["../x", "..", ".hidden", "a/b", "/etc/passwd", "a\\b", "", " ", "a b",
                                  "name\n", "x" * 129, "-dash", 5, ["a"]])
def test_task_spec_rejects_bad_hpo_name(name):
    body = make_body()
    body["hpoName"] = name

    assert_spec_error(parse_error(body), "hpoName", name)


@pytest.mark.parametrize("name", ["Admin-hpo-1", "a", "task_2.v3", "x" * 128, "0abc"])
def test_check_name_accepts_safe_names(name):
    assert check_name(name) == name


def test_task_spec_rejects_missing_or_wrong_sections():
    assert_spec_error(parse_error([]), "(body)", [])
    body = make_body()
    del body["algoDef"]
    assert_spec_error(parse_error(body), "algoDef", None)
    body = make_body()
    del body["modelSpec"]
    assert_spec_error(parse_error(body), "modelSpec", None)


def test_task_spec_rejects_missing_hyper_params():
    body = make_body()
    del body["hyperParams"]

    assert_spec_error(parse_error(body), "hyperParams")
    assert "is missing" in str(parse_error(body))


def test_task_spec_rejects_empty_hyper_params():
    body = make_body()
    body["hyperParams"] = []

    assert_spec_error(parse_error(body), "hyperParams", [])


def test_task_spec_reports_search_space_error_path():
    body = make_body()
    body["hyperParams"][1]["maxIntVal"] = 16

    assert_spec_error(parse_error(body), "hyperParams[1] (hidden).minIntVal", 32)


def test_task_spec_maps_additional_metrics():
    body = make_body(additionalMetrics={"accuracy": "Maximize", "time": "latest", "auc": "best"})

    spec = TaskSpec.parse(body)

    assert spec.additional_metrics == {"accuracy": "maximize", "time": "latest", "auc": "latest"}


def test_task_spec_reads_hyperband_eta():
    assert TaskSpec.parse(make_body(hyperbandEta="3")).hyperband_eta == 3.0
    assert TaskSpec.parse(make_body(hyperbandEta="")).hyperband_eta is None


# --- ExperimentGridSearch ---------------------------------------------------------------------------------------


def test_task_spec_parses_experiments_with_typed_values():
    spec = TaskSpec.parse(GRID_BODY)

    assert spec.algorithm == "ExperimentGridSearch"
    assert len(spec.space) == 0
    assert [e.id for e in spec.experiments] == [1, 2]
    first, second = spec.experiments
    assert first.config == {"learning_rate": 0.1, "optimizer": "Adam", "batch": 64}
    assert type(first.config["batch"]) is int
    assert type(first.config["learning_rate"]) is float
    assert second.config == {"learning_rate": 0.2}


def test_task_spec_experiments_ignore_hyper_params():
    body = copy.deepcopy(GRID_BODY)
    body["hyperParams"] = [{"name": "bad"}]
    body["algoDef"]["algorithm"] = "experimentgridsearch"

    assert len(TaskSpec.parse(body).experiments) == 2


def test_task_spec_experiments_number_missing_ids():
    body = copy.deepcopy(GRID_BODY)
    for entry in body["experiments"]:
        del entry["id"]

    assert [e.id for e in TaskSpec.parse(body).experiments] == [0, 1]


@pytest.mark.parametrize(("item", "expected"), [
    ({"dataType": "INT", "fixedVal": "3"}, 3), ({"dataType": "int", "fixedVal": 3.0}, 3),
    ({"dataType": "DOUBLE", "fixedVal": "1e-3"}, 0.001), ({"dataType": "Double", "fixedVal": 2}, 2.0),
    ({"dataType": "STR", "fixedVal": "Adam"}, "Adam"), ({"dataType": "STRING", "fixedVal": 5}, "5"),
    ({"fixedVal": "relu"}, "relu"),
])
def test_task_spec_types_fixed_values(item, expected):
    body = copy.deepcopy(GRID_BODY)
    body["experiments"][1]["hyperParams"] = [{"name": "p", **item}]

    value = TaskSpec.parse(body).experiments[1].config["p"]

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("change", "field", "value"), [
    ({"id": 1}, "experiments[1].id", 1),
    ({"id": -1}, "experiments[1].id", -1),
    ({"id": "two"}, "experiments[1].id", "two"),
    ({"hyperParams": []}, "experiments[1].hyperParams", []),
    ({"hyperParams": [{"dataType": "INT", "fixedVal": "1"}]}, "experiments[1].hyperParams[0]",
     {"dataType": "INT", "fixedVal": "1"}),
    ({"hyperParams": [{"name": "lr", "dataType": "DOUBLE"}]}, "experiments[1].hyperParams[0].fixedVal", None),
    ({"hyperParams": [{"name": "lr", "dataType": "DOUBLE", "fixedVal": "fast"}]},
     "experiments[1].hyperParams[0].fixedVal", "fast"),
    ({"hyperParams": [{"name": "lr", "dataType": "DOUBLE", "fixedVal": "nan"}]},
     "experiments[1].hyperParams[0].fixedVal", "nan"),
    ({"hyperParams": [{"name": "n", "dataType": "INT", "fixedVal": "1.5"}]},
     "experiments[1].hyperParams[0].fixedVal", "1.5"),
    ({"hyperParams": [{"name": "n", "dataType": "INT", "fixedVal": "inf"}]},
     "experiments[1].hyperParams[0].fixedVal", "inf"),
    ({"hyperParams": [{"name": "n", "dataType": "INT", "fixedVal": True}]},
     "experiments[1].hyperParams[0].fixedVal", True),
    ({"hyperParams": [{"name": "n", "dataType": "BOOL", "fixedVal": "abc"}]},
     "experiments[1].hyperParams[0].dataType", "BOOL"),
    ({"hyperParams": [{"name": "n", "dataType": "INT", "fixedVal": "1"},
                      {"name": "n", "dataType": "INT", "fixedVal": "2"}]},
     "experiments[1].hyperParams[1].name", "n"),
], ids=["duplicate-id", "negative-id", "text-id", "no-params", "param-without-name", "no-value", "text-double",
        "nan-double", "fraction-int", "infinite-int", "bool-int", "unknown-data-type", "duplicate-param"])
def test_task_spec_rejects_invalid_experiment(change, field, value):
    body = copy.deepcopy(GRID_BODY)
    body["experiments"][1].update(change)

    assert_spec_error(parse_error(body), field, value)


@pytest.mark.parametrize("experiments", [None, [], {"id": 1}, ["exp"]])
def test_task_spec_rejects_invalid_experiment_list(experiments):
    body = copy.deepcopy(GRID_BODY)
    body["experiments"] = experiments
    field = "experiments[0]" if experiments == ["exp"] else "experiments"

    assert_spec_error(parse_error(body), field, experiments[0] if field == "experiments[0]" else experiments)


# --- modelSpec.args ---------------------------------------------------------------------------------------------


def test_model_spec_reads_launch_and_script_args():
    model = ModelSpec.parse({"sigName": "ig-gpu", "args": "--exec-start PyTorch --model-dir mnist "
                             "--model-main train.py --cs-datastore-meta type=fs --epochs 3 --trainFile 'a b.csv'"})

    assert model.main == "train.py"
    assert model.model_dir == "mnist"
    assert model.exec_start == "PyTorch"
    assert model.script_args == ("--epochs", "3", "--trainFile", "a b.csv")
    assert model.command == ()
    assert model.sig_name == "ig-gpu"
    assert (model.min_workers, model.max_workers) == (1, 1)


def test_model_spec_reads_flag_equals_value():
    model = ModelSpec.parse({"args": "--model-main=train.py --model-dir=code --lr=0.1"})

    assert model.main == "train.py"
    assert model.model_dir == "code"
    assert model.script_args == ("--lr=0.1",)


def test_model_spec_accepts_script_in_subdirectory():
    assert ModelSpec.parse({"args": "--model-main src/train.py"}).main == "src/train.py"


@pytest.mark.parametrize(("options", "expected"), [
    ("maxWorkers=2", (1, 2)), ("maxWorkers=4,minWorkers=2", (2, 4)), ("'minWorkers=1, maxWorkers=3,'", (1, 3)),
])
def test_model_spec_reads_edt_options(options, expected):
    model = ModelSpec.parse({"args": f"--exec-start edtPyTorch --model-main train.py --edt-options {options}"})

    assert (model.min_workers, model.max_workers) == expected
    assert model.exec_start == "edtPyTorch"
    assert model.script_args == ()


def test_model_spec_worker_fields_override_edt_options():
    model = ModelSpec.parse({"args": "--model-main train.py --edt-options maxWorkers=2", "maxWorkers": 4,
                             "minWorkers": "2"})

    assert (model.min_workers, model.max_workers) == (2, 4)


@pytest.mark.parametrize("flag", ["--workerDeviceNum", "--gpuPerWorker"])
def test_model_spec_reads_gpus_per_worker(flag):
    assert ModelSpec.parse({"args": f"--model-main train.py {flag} 2"}).gpus_per_worker == 2


@pytest.mark.parametrize(("args", "command"), [
    ("python train.py --epochs 3", ("python", "train.py", "--epochs", "3")),
    ("--exec-start PyTorch python train.py", ("python", "train.py")),
    ("bash -c 'python train.py'", ("bash", "-c", "python train.py")),
])
def test_model_spec_reads_plain_command_line(args, command):
    model = ModelSpec.parse({"args": args})

    assert model.main is None
    assert model.command == command
    assert model.script_args == ()


@pytest.mark.parametrize("command", ["python train.py --epochs 3", ["python", "train.py", "--epochs", "3"]])
def test_model_spec_reads_command_field(command):
    model = ModelSpec.parse({"command": command})

    assert model.command == ("python", "train.py", "--epochs", "3")


@pytest.mark.parametrize(("model", "field", "value"), [
    ({"args": "--model-main ../evil.py"}, "modelSpec.args", "../evil.py"),
    ({"args": "--model-main=../evil.py"}, "modelSpec.args", "../evil.py"),
    ({"args": "--model-main src/../../evil.py"}, "modelSpec.args", "src/../../evil.py"),
    ({"args": "--model-main /etc/evil.py"}, "modelSpec.args", "/etc/evil.py"),
    ({"args": "--model-main ''"}, "modelSpec.args", ""),
    ({"args": "--model-main train.py --model-dir ../other"}, "modelSpec.args", "../other"),
    ({"args": "--model-main train.py --model-dir /abs"}, "modelSpec.args", "/abs"),
    ({"args": "--exec-start PyTorch"}, "modelSpec.args", "--exec-start PyTorch"),
    ({"args": ""}, "modelSpec.args", ""),
    ({"args": "--model-main"}, "modelSpec.args", "--model-main"),
    ({"args": "--model-main 'train.py"}, "modelSpec.args", "--model-main 'train.py"),
    ({"args": ["--model-main", "train.py"]}, "modelSpec.args", ["--model-main", "train.py"]),
    ({"command": []}, "modelSpec.command", []),
    ({"command": ["python", 3]}, "modelSpec.command", ["python", 3]),
    ({"args": "--model-main t.py --edt-options maxWorkers=0"}, "modelSpec.args --edt-options maxWorkers", "0"),
    ({"args": "--model-main t.py --edt-options maxWorkers"}, "modelSpec.args --edt-options", "maxWorkers"),
    ({"args": "--model-main t.py --edt-options minWorkers=3,maxWorkers=2"},
     "modelSpec.args --edt-options minWorkers", 3),
    ({"args": "--model-main t.py", "minWorkers": 3, "maxWorkers": 2}, "modelSpec.minWorkers", 3),
    ({"args": "--model-main t.py", "maxWorkers": "many"}, "modelSpec.maxWorkers", "many"),
    ({"args": "--model-main t.py --gpuPerWorker two"}, "modelSpec.args --gpuPerWorker", "two"),
    ({"args": "--model-main t.py --workerDeviceNum -1"}, "modelSpec.args --workerDeviceNum", "-1"),
], ids=["parent-dir", "parent-dir-equals", "parent-dir-nested", "absolute", "empty-main", "model-dir-parent",
        "model-dir-absolute", "no-script", "empty-args", "flag-without-value", "unclosed-quote", "args-not-string",
        "empty-command", "command-not-strings", "edt-zero-workers", "edt-not-key-value", "edt-min-above-max",
        "min-above-max", "workers-not-integer", "gpus-not-integer", "gpus-negative"])
def test_model_spec_rejects_invalid_launch(model, field, value):
    with pytest.raises(SpecError) as caught:
        ModelSpec.parse(model)

    assert_spec_error(caught.value, field, value)


@pytest.mark.parametrize("raw", [None, "--model-main train.py"])
def test_model_spec_rejects_missing_or_non_object(raw):
    with pytest.raises(SpecError) as caught:
        ModelSpec.parse(raw)

    assert_spec_error(caught.value, "modelSpec", raw)
