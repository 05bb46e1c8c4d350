"""A minimal search-algorithm plugin: uniform random draws from the WMLA search space.

Install it by copying this directory to ``$OPENHPO_PLUGIN_DIR/random_plugin`` (by default
``.openhpo/plugins/random_plugin``) or with ``hpo_core.algorithms.plugin.install_plugin``, then submit a task with
``"algorithm": "random_plugin"``. ``RandomSeed`` (or ``random_seed``) in ``algoParams`` seeds the draws.
"""

import math
import random

from plugins.core.base_plugin_opt import BasePluginOptimizer
from plugins.core.logger import logger


def _present(value):
    return value is not None and value != ""


def draw(param, rng):
    """Draw one value of a WMLA ``hyperParams`` entry (numbers may arrive as strings)."""
    data_type = str(param["dataType"]).upper()
    if str(param["type"]).lower() == "discrete":
        if data_type == "DOUBLE":
            return rng.choice([float(v) for v in param["discreteDbVal"]])
        if data_type == "INT":
            return rng.choice([int(v) for v in param["discreteIntVal"]])
        return rng.choice(param.get("discreateStrVal") or param.get("discreteStrVal"))

    suffix = "DbVal" if data_type == "DOUBLE" else "IntVal"
    low, high = float(param["min" + suffix]), float(param["max" + suffix])
    if _present(param.get("step")):
        step = float(param["step"])
        x = low + step * rng.randint(0, int(math.floor((high - low) / step + 1e-9)))
    elif data_type == "INT" and not _present(param.get("power")):
        return rng.randint(int(low), int(high))
    else:
        x = rng.uniform(low, high)
    value = float(param["power"]) ** x if _present(param.get("power")) else x
    return int(round(value)) if data_type == "INT" else value


class PluginOptimizer(BasePluginOptimizer):
    """Random search. Draw ``k`` is seeded from ``(seed, k)``, so the state is only the number of draws."""

    def __init__(self, name, hyper_parameters, **kwargs):
        super().__init__(name, hyper_parameters, **kwargs)
        self.seed = int(kwargs.get("RandomSeed", kwargs.get("random_seed", "0")))
        self.draws = 0

    def search(self, number_samples, last_exp_results):
        for result in last_exp_results or []:
            logger.info("trial %s ended %s with metricVal %s", result["id"], result["state"], result["metricVal"])
        configs = []
        for _ in range(number_samples):
            rng = random.Random(f"{self.seed}-{self.draws}")
            self.draws += 1
            configs.append({param["name"]: draw(param, rng) for param in self.hyper_parameters})
        return configs

    def get_state(self):
        return {"draws": self.draws}

    def set_state(self, state_dict):
        self.draws = int(state_dict["draws"])
