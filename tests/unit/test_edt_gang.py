"""Pure parts of elastic trials: member messages, trial width, edt options and launcher arguments."""

from __future__ import annotations

import pytest

from broker.coordinator import trial_width
from edt.gang import MemberOrder, advertised_address
from edt.launch import parse_args
from hpo_core.errors import SpecError
from hpo_core.records import Trial
from hpo_core.spec import TaskSpec
from workers.members import max_restarts_of


def _spec(args: str) -> TaskSpec:
    return TaskSpec.parse({
        "modelSpec": {"args": args},
        "algoDef": {"algorithm": "Random", "objectiveMetric": "loss"},
        "hyperParams": [{"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0, "maxDbVal": 1}],
    })


def test_member_order_round_trips_kwargs():
    order = MemberOrder("task-1", 3, 2, 1, 1, 2, yields=4)
    assert order.gang == "task-1:3:2"
    assert MemberOrder(**order.kwargs()) == order


@pytest.mark.parametrize("slot, min_workers, max_workers, message", [
    (2, 1, 2, "slot must be in 0..1"),
    (-1, 1, 2, "slot must be in 0..1"),
    (0, 3, 2, "1 <= min_workers <= max_workers"),
    (0, 0, 2, "1 <= min_workers <= max_workers"),
])
def test_member_order_rejects_bad_width(slot, min_workers, max_workers, message):
    with pytest.raises(ValueError, match=message):
        MemberOrder("t", 0, 1, slot, min_workers, max_workers)


@pytest.mark.parametrize("args, meta, expected", [
    ("--model-main a.py", {}, (1, 1)),
    ("--model-main a.py --edt-options maxWorkers=4", {}, (1, 4)),
    ("--model-main a.py --edt-options maxWorkers=4,minWorkers=2", {}, (2, 4)),
    ("--model-main a.py --edt-options maxWorkers=2,minWorkers=2", {"max_workers": 4}, (2, 4)),
    ("--model-main a.py --edt-options maxWorkers=4,minWorkers=3", {"max_workers": 2}, (2, 2)),
    ("--model-main a.py --edt-options maxWorkers=4", {"max_workers": "8", "min_workers": True}, (1, 4)),
    ("--model-main a.py", {"min_workers": 2, "max_workers": 3}, (2, 3)),
])
def test_trial_width_from_spec_and_meta(args, meta, expected):
    assert trial_width(_spec(args), Trial(id=0, config={}, meta=meta)) == expected


@pytest.mark.parametrize("args, expected", [
    ("--model-main a.py", 3),
    ("--model-main a.py --edt-options maxWorkers=2", 3),
    ("--model-main a.py --edt-options maxWorkers=2,maxRestarts=0", 0),
    ("--model-main a.py --edt-options=maxRestarts=5,maxWorkers=2", 5),
])
def test_max_restarts_from_edt_options(args, expected):
    assert max_restarts_of(_spec(args), default=3) == expected


@pytest.mark.parametrize("value", ["-1", "two", ""])
def test_max_restarts_rejects_invalid(value):
    with pytest.raises(SpecError, match="maxRestarts"):
        max_restarts_of(_spec(f"--model-main a.py --edt-options maxWorkers=2,maxRestarts={value}"), default=3)


def test_launch_arguments_split_command():
    args = parse_args(["--endpoint", "127.0.0.1:5", "--run-id", "r", "--min-nodes", "1", "--max-nodes", "2",
                       "--outcome", "o.json", "--", "python", "train.py", "--epochs", "3"])
    assert args.command == ["python", "train.py", "--epochs", "3"]
    assert args.max_restarts == 3
    assert args.last_call_timeout == 1


@pytest.mark.parametrize("extra, message", [
    (["--min-nodes", "3", "--max-nodes", "2", "--", "python"], "must satisfy 1 <= min <= max"),
    (["--min-nodes", "1", "--max-nodes", "2"], "training command is missing"),
])
def test_launch_arguments_rejected(extra, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--endpoint", "h:1", "--run-id", "r", "--outcome", "o", *extra])
    assert message in capsys.readouterr().err


def test_advertised_address_prefers_configured():
    assert advertised_address("redis://10.1.2.3:6379/0", "192.0.2.7") == "192.0.2.7"
    assert advertised_address("redis://127.0.0.1:6379/0") == "127.0.0.1"
