"""A search-algorithm plugin that runs Optuna's CMA-ES sampler through Optuna's ask-and-tell interface.

It needs ``optuna`` and ``cmaes`` installed where the plugin runs. It handles Range parameters only: DOUBLE, with
``power`` for a log scale or with ``step``, and INT, with or without ``step``. Discrete parameters are rejected,
because CMA-ES searches numeric coordinates.

``algoParams``: ``RandomSeed`` (or ``random_seed``) seeds the sampler, and ``PopulationSize`` sets the CMA-ES
population (Optuna's default when absent).

State: ``get_state`` returns the results told so far and the configurations still running. ``set_state`` re-adds
the told results to a new study, warm-starts CMA-ES from them (the ``source_trials`` option of Optuna's
``CmaEsSampler``) and asks again for the running configurations so that their results can still be told. The
CMA-ES distribution itself is not stored, so a restored plugin continues from what it learnt, not bit for bit.
"""

import warnings

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from plugins.core.base_plugin_opt import BasePluginOptimizer
from plugins.core.logger import logger

optuna.logging.set_verbosity(optuna.logging.WARNING)
# source_trials is marked experimental in Optuna; the warning would repeat in the log on every restore.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _present(value):
    return value is not None and value != ""


class RangeParam:
    """One Range hyperparameter as an Optuna distribution, with ``power`` applied outside Optuna."""

    def __init__(self, entry):
        self.name = entry["name"]
        data_type = str(entry["dataType"]).upper()
        if str(entry["type"]).lower() != "range" or data_type not in ("DOUBLE", "INT"):
            raise ValueError(f"parameter {self.name!r}: CMA-ES handles DOUBLE and INT Range parameters only, "
                             f"not {entry['type']} {entry['dataType']}")
        self.is_int = data_type == "INT"
        suffix = "IntVal" if self.is_int else "DbVal"
        low, high = float(entry["min" + suffix]), float(entry["max" + suffix])
        step = float(entry["step"]) if _present(entry.get("step")) else None
        self.power = float(entry["power"]) if _present(entry.get("power")) else None
        if self.power is not None and (self.is_int or step is not None):
            raise ValueError(f"parameter {self.name!r}: power is supported only on a DOUBLE range without step")
        if self.is_int:
            self.distribution = IntDistribution(int(low), int(high), step=int(step or 1))
        else:
            self.distribution = FloatDistribution(low, high, step=step)

    def to_value(self, x):
        """Map Optuna's parameter value to the hyperparameter's value."""
        if self.power is not None:
            return self.power ** x
        return int(x) if self.is_int else float(x)


def _key(config):
    """Identify a configuration; numbers are rounded to 10 digits, since openhpo normalises grid values."""
    return tuple(sorted((name, float(f"{value:.10g}")) for name, value in config.items()))


class PluginOptimizer(BasePluginOptimizer):
    """CMA-ES over the Range parameters, minimising each result's ``loss`` (``metricVal`` if ``loss`` is absent)."""

    def __init__(self, name, hyper_parameters, **kwargs):
        super().__init__(name, hyper_parameters, **kwargs)
        seed = kwargs.get("RandomSeed", kwargs.get("random_seed"))
        self.seed = int(seed) if seed is not None else None
        self.population = int(kwargs["PopulationSize"]) if "PopulationSize" in kwargs else None
        self.params = [RangeParam(entry) for entry in self.hyper_parameters]
        self.distributions = {param.name: param.distribution for param in self.params}
        self.told = []  # {"params": Optuna's values, "loss": float or None for a failed trial}, in order
        self.running = {}  # _key(config) -> the Optuna trial asked for it
        self.study = self._new_study(source_trials=None)

    def _new_study(self, source_trials):
        sampler = optuna.samplers.CmaEsSampler(seed=self.seed, popsize=self.population,
                                               source_trials=source_trials or None,
                                               warn_independent_sampling=False)
        return optuna.create_study(sampler=sampler, direction="minimize")

    def _config(self, optuna_params):
        return {param.name: param.to_value(optuna_params[param.name]) for param in self.params}

    def search(self, number_samples, last_exp_results):
        for result in last_exp_results or []:
            self._tell(result)
        configs = []
        for _ in range(number_samples):
            trial = self.study.ask(self.distributions)
            config = self._config(trial.params)
            self.running[_key(config)] = trial
            configs.append(config)
        return configs

    def _tell(self, result):
        trial = self.running.pop(_key(result["hyperParams"]), None)
        if trial is None:
            logger.warning("result of trial %s matches no running configuration; ignored", result["id"])
            return
        loss = result["loss"] if "loss" in result else result["metricVal"]
        if loss is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, float(loss))
        self.told.append({"params": trial.params, "loss": loss})

    def get_state(self):
        return {"told": self.told, "running": [trial.params for trial in self.running.values()]}

    def set_state(self, state_dict):
        completed, failed = [], []
        for item in state_dict["told"]:
            if item["loss"] is None:
                failed.append(create_trial(state=TrialState.FAIL, params=item["params"],
                                           distributions=self.distributions))
            else:
                completed.append(create_trial(params=item["params"], distributions=self.distributions,
                                              value=float(item["loss"])))
        self.study = self._new_study(source_trials=completed)
        for frozen in completed + failed:
            self.study.add_trial(frozen)
        self.told = list(state_dict["told"])
        self.running = {}
        for optuna_params in state_dict["running"]:
            self.study.enqueue_trial(optuna_params)
            trial = self.study.ask(self.distributions)
            self.running[_key(self._config(trial.params))] = trial
