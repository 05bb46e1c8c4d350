"""The base class of a search-algorithm plugin: ``from plugins.core.base_plugin_opt import BasePluginOptimizer``.

A plugin is a directory with an ``optimizer.py`` that defines ``class PluginOptimizer(BasePluginOptimizer)``.
openhpo creates it once per task (again if its process is replaced), in a separate process, and calls
:meth:`BasePluginOptimizer.search` each time it has free trial slots. See :mod:`hpo_core.algorithms.plugin` for how results reach the plugin and how its
state is kept across coordinator restarts.
"""

from __future__ import annotations

import abc
from typing import Any


class BasePluginOptimizer(abc.ABC):
    """Base class of ``PluginOptimizer``; a subclass calls ``super().__init__`` first and writes :meth:`search`.

    Args:
        name: the plugin's name, as in ``algoDef.algorithm``.
        hyper_parameters: the request's ``hyperParams`` list as submitted: dicts with ``name``, ``type``
            (``Range`` or ``Discrete``), ``dataType`` (``DOUBLE``, ``INT`` or ``STR``) and the bounds, lists,
            ``step`` and ``power`` of WMLA's format.
        **kwargs: the task's ``algoParams``, ``{name: value}`` with every value a string.
    """

    def __init__(self, name: str, hyper_parameters: list[dict[str, Any]], **kwargs: str):
        self.name = name
        self.hyper_parameters = list(hyper_parameters or [])
        self.algo_params = dict(kwargs)

    @abc.abstractmethod
    def search(self, number_samples: int, last_exp_results: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Propose up to ``number_samples`` configurations as ``{hyperparameter name: value}`` dicts.

        Args:
            number_samples: how many configurations openhpo can start now.
            last_exp_results: the trials that ended since the previous call, each
                ``{"id", "hyperParams", "metricVal", "loss", "state", "metrics"}``; empty or ``None`` on the
                first call.

        Returns:
            At most ``number_samples`` configurations; ``[]`` when the search space is exhausted.
        """

    def get_state(self) -> dict[str, Any] | None:
        """Return what :meth:`set_state` needs to rebuild this optimizer, as JSON-serialisable data.

        The default, ``None``, means the plugin keeps no state across a restart.
        """
        return None

    def set_state(self, state_dict: dict[str, Any]) -> None:
        """Restore the state that :meth:`get_state` returned, after ``__init__`` and before ``search``."""


__all__ = ["BasePluginOptimizer"]
