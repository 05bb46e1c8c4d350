"""The ``openhpo`` command line's result printing."""

from __future__ import annotations

from openhpo.cli import _print_results


def _status(experiments: list[dict], **extra) -> dict:
    return {"hpoName": "t1", "state": "FAILED", "algoDef": {"objectiveMetric": "loss"},
            "experiments": experiments, **extra}


def test_results_without_trials_print_no_table(capsys):
    _print_results(_status([], reason="algorithm boom failed: plugin 'boom': search() raised"), as_json=False)

    lines = capsys.readouterr().out.splitlines()
    assert lines == ["t1: FAILED, no trial ran",
                     "task FAILED: algorithm boom failed: plugin 'boom': search() raised"]


def test_results_with_trials_print_table(capsys):
    experiment = {"id": 0, "state": "FAILED", "metricVal": 9999.99, "values": {"lr": 0.01}, "duration": 1.5,
                  "reason": "exit code 1"}
    _print_results(_status([experiment]), as_json=False)

    output = capsys.readouterr().out
    assert "t1: FAILED" in output
    assert "lr=0.01" in output
    assert "trial 0 FAILED: exit code 1" in output
    assert "no trial produced a result" in output
