"""The logger that search-algorithm plugins write to: ``from plugins.core.logger import logger``.

It is a standard :class:`logging.Logger`. In the plugin's host process its records go to stderr, and the
coordinator copies each line into its own log under the plugin's name.
"""

from __future__ import annotations

import logging

#: The logger for plugin code, named ``openhpo.plugin``.
logger = logging.getLogger("openhpo.plugin")

__all__ = ["logger"]
