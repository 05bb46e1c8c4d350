"""The environment that local mode gives its Celery worker."""

from __future__ import annotations

import subprocess
import sys

from openhpo.local import ROOT_WORKER_WARNING_FILTER, LocalCluster

# Celery's own privilege check, which warns only under root, then its root warning and another
# SecurityWarning emitted directly, so the filter is checked for a user of any uid.
WARNINGS_SCRIPT = """
import warnings
from celery.exceptions import SecurityWarning
from celery.platforms import ROOT_DISCOURAGED, check_privileges

check_privileges({"json"})
warnings.warn(SecurityWarning(ROOT_DISCOURAGED.format(uid=0, euid=0, gid=0, egid=0)))
warnings.warn(SecurityWarning("another security warning"))
"""


def test_worker_env_keeps_user_filters(monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "default::DeprecationWarning")

    env = LocalCluster(redis_url="redis://127.0.0.1:6379/11").worker_env()

    assert env["PYTHONWARNINGS"] == f"default::DeprecationWarning,{ROOT_WORKER_WARNING_FILTER}"


def test_worker_env_hides_only_root_warning(monkeypatch):
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    env = LocalCluster(redis_url="redis://127.0.0.1:6379/11").worker_env()

    result = subprocess.run([sys.executable, "-c", WARNINGS_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=60, check=True)

    assert "superuser privileges" not in result.stderr
    assert "SecurityWarning: another security warning" in result.stderr
