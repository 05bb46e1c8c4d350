"""Start one training process of an elastic trial so that it dies with its elastic agent.

torch's elastic agent starts each worker in a session of its own, so a worker outlives an agent that is killed
with SIGKILL and keeps training as an orphan. The launcher therefore starts every worker as
``python -m edt.child COMMAND...``: this module requests that Linux send SIGKILL to the process when its parent (the
agent) dies, then replaces itself with ``COMMAND``. The request survives ``execve``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to send SIGKILL to this process when its parent dies; no effect on other systems."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m edt.child COMMAND [ARG...]")
    parent = os.getppid()
    die_with_parent()
    # The agent may have died between our start and the prctl call; then no signal would ever come.
    if os.getppid() != parent:
        sys.exit("edt.child: the elastic agent exited before the training process started")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
