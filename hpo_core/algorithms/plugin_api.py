"""The names that a search-algorithm plugin imports, under openhpo's own package name.

``from hpo_core.algorithms.plugin_api import BasePluginOptimizer, logger`` gives the same objects as WMLA's
``plugins.core.base_plugin_opt.BasePluginOptimizer`` and ``plugins.core.logger.logger``.
"""

from plugins.core.base_plugin_opt import BasePluginOptimizer
from plugins.core.logger import logger

__all__ = ["BasePluginOptimizer", "logger"]
