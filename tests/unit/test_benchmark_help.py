"""The benchmark scripts' command-line help."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("script, options", [
    ("overhead.py", ["--trials", "--workers", "--cold"]),
    ("trial_start.py", ["--trials"]),
])
def test_benchmark_options_have_help(script, options):
    # A wide terminal keeps each option and its help on one line.
    env = dict(os.environ, COLUMNS="200")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"], env=env,
                            capture_output=True, text=True, timeout=60, check=True)

    help_lines = {}
    for line in result.stdout.splitlines():
        match = re.match(r"\s+(--[\w-]+)(?: [A-Z_]+)?\s{2,}(\S.*)", line)
        if match:
            help_lines[match.group(1)] = match.group(2)
    for option in options:
        assert help_lines.get(option), f"{option} has no help text in:\n{result.stdout}"
