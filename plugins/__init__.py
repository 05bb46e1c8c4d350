"""The import path that WMLA search-algorithm plugins use (``plugins.core.base_plugin_opt``, ``plugins.core.logger``).

openhpo provides this package so that a plugin written for WMLA HPO imports unchanged; the same names are
available as :mod:`hpo_core.algorithms.plugin_api`.
"""
