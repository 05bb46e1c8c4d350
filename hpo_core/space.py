"""The search space: parsing WMLA ``hyperParams``, validation, sampling and typed values.

A WMLA search space is a list of parameter entries such as::

    {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"}

Each parameter has an *internal coordinate* that the algorithms search over:

* a continuous range: the value itself, or the exponent when ``power`` is set (``value = power ** x``);
* a grid (an INT range, or any range with ``step``): the grid index ``k`` in ``0 .. size - 1``;
* a discrete list: the index into the list.

``decode`` maps a coordinate to a typed value (``int``, ``float`` or ``str``) and ``encode`` maps it back, so every
algorithm works on numbers while ``config.json`` and the trial records keep the user's types.
"""

from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator, Mapping, Sequence

from hpo_core.errors import SpecError, misspelling_hint

#: Spaces with at most this many points are sampled without replacement by enumerating what is left.
ENUMERATION_LIMIT = 200_000


class DataType(str, Enum):
    DOUBLE = "double"
    INT = "int"
    STR = "str"


class ParamType(str, Enum):
    RANGE = "range"
    DISCRETE = "discrete"


_DATA_TYPE_NAMES = {"double": DataType.DOUBLE, "float": DataType.DOUBLE, "int": DataType.INT,
                    "integer": DataType.INT, "str": DataType.STR, "string": DataType.STR}
_PARAM_TYPE_NAMES = {"range": ParamType.RANGE, "discrete": ParamType.DISCRETE}
_BOUND_KEYS = {DataType.DOUBLE: ("minDbVal", "maxDbVal"), DataType.INT: ("minIntVal", "maxIntVal")}
_LIST_KEYS = {DataType.DOUBLE: ("discreteDbVal",), DataType.INT: ("discreteIntVal",),
              DataType.STR: ("discreateStrVal", "discreteStrVal")}
# Grid points are rounded to this many significant digits so that 0.1 + 3 * 0.1 prints as 0.4.
_GRID_DIGITS = 12


def _number(raw: Any, where: str, fix: str) -> float:
    """Read a JSON number, or a number written as a string, rejecting NaN and infinities."""
    if isinstance(raw, bool):
        raise SpecError(where, "must be a number", raw, fix)
    if isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str) and raw.strip():
        try:
            value = float(raw.strip())
        except ValueError:
            raise SpecError(where, "must be a number", raw, fix) from None
    else:
        raise SpecError(where, "must be a number", raw, fix)
    if not math.isfinite(value):
        raise SpecError(where, "must be a finite number", raw, fix)
    return value


def _integer(raw: Any, where: str, fix: str) -> int:
    value = _number(raw, where, fix)
    if value != int(value):
        raise SpecError(where, "must be an integer", raw, fix)
    return int(value)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number_text(value: float) -> str:
    """Write a number as WMLA's string fields do ("10", "0.002"), with every digit needed to read it back."""
    return str(int(value)) if value.is_integer() else repr(value)


def _present(entry: Mapping[str, Any], key: str) -> bool:
    value = entry.get(key)
    return value is not None and value != ""


def _round_grid(value: float) -> float:
    if value == 0:
        return 0.0
    digits = _GRID_DIGITS - int(math.floor(math.log10(abs(value)))) - 1
    return round(value, digits)


@dataclass(frozen=True)
class Param:
    """One hyperparameter of the search space.

    For a range, ``low`` and ``high`` are the bounds as written, which are the exponent bounds when ``power`` is
    set. ``choices`` holds the values of a discrete parameter.
    """

    name: str
    data_type: DataType
    param_type: ParamType
    low: float | None = None
    high: float | None = None
    step: float | None = None
    power: float | None = None
    choices: tuple[Any, ...] = ()

    # --- shape of the internal coordinate ---------------------------------------------------------------------

    @property
    def is_categorical(self) -> bool:
        return self.param_type is ParamType.DISCRETE

    @property
    def grid_size(self) -> int | None:
        """Number of points on the parameter's grid, or ``None`` for a continuous range."""
        if self.param_type is ParamType.DISCRETE:
            return len(self.choices)
        assert self.low is not None and self.high is not None  # set for every range by from_wmla
        if self.step is not None:
            return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        if self.data_type is DataType.INT and self.power is None:
            return int(self.high - self.low) + 1
        return None

    @property
    def is_log(self) -> bool:
        return self.power is not None

    def bounds(self) -> tuple[float, float]:
        """Bounds of the internal coordinate: ``(0, size - 1)`` for a grid, the range as written otherwise."""
        size = self.grid_size
        if size is not None:
            return 0.0, float(size - 1)
        assert self.low is not None and self.high is not None
        return self.low, self.high

    # --- coordinate <-> value -----------------------------------------------------------------------------------

    def decode(self, x: float) -> Any:
        """Map an internal coordinate to a typed value, clipping it to the parameter's bounds."""
        size = self.grid_size
        if self.param_type is ParamType.DISCRETE:
            return self.choices[min(max(int(round(x)), 0), size - 1)]
        assert self.low is not None and self.high is not None
        if size is not None:
            k = min(max(int(round(x)), 0), size - 1)
            exponent = self.low + k * (self.step if self.step is not None else 1.0)
            exponent = min(exponent, self.high)
        else:
            exponent = min(max(float(x), self.low), self.high)
        value = exponent if self.power is None else self.power ** exponent
        if self.data_type is DataType.INT:
            return int(round(value))
        if size is not None:
            value = _round_grid(value)
        return float(value)

    def encode(self, value: Any) -> float:
        """Map a value of this parameter back to its internal coordinate.

        Numbers of any real type are accepted (numpy scalars included), but never ``bool``.

        Raises:
            ValueError: the value is not in the parameter's domain.
        """
        if self.param_type is ParamType.DISCRETE:
            return self._encode_choice(value)
        if not _is_real(value) or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        if self.data_type is DataType.INT and value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        assert self.low is not None and self.high is not None
        if self.power is not None:
            if value <= 0:
                raise ValueError(f"{value!r} is not positive, so it is not a power of {self.power:g}")
            exponent = math.log(value) / math.log(self.power)
        else:
            exponent = float(value)
        if self.data_type is DataType.INT and self.power is not None:
            # Rounding to integers moves the end values off power ** bound (2 ** 3.3 = 9.85 is decoded as 10),
            # so the domain is checked on the rounded end values and the exponent is clipped to the bounds.
            low_value, high_value = self.value_bounds()
            inside = low_value <= value <= high_value
            exponent = min(max(exponent, self.low), self.high)
        else:
            tolerance = 1e-9 * max(1.0, abs(self.high - self.low))
            inside = self.low - tolerance <= exponent <= self.high + tolerance
        if not inside:
            low_value, high_value = self.value_bounds()
            raise ValueError(f"{value!r} is outside [{low_value:g}, {high_value:g}]")
        size = self.grid_size
        if size is None:
            return min(max(exponent, self.low), self.high)
        k = round((exponent - self.low) / (self.step if self.step is not None else 1.0))
        k = min(max(k, 0), size - 1)
        if self.decode(k) != (int(value) if self.data_type is DataType.INT else _round_grid(float(value))):
            raise ValueError(f"{value!r} is not on the grid {self._grid_text()}")
        return float(k)

    def _encode_choice(self, value: Any) -> float:
        for index, choice in enumerate(self.choices):
            if self.data_type is DataType.STR:
                matches = isinstance(value, str) and value == choice
            elif self.data_type is DataType.INT:
                matches = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value == choice
            else:
                matches = _is_real(value) and float(value) == choice
            if matches:
                return float(index)
        raise ValueError(f"{value!r} is not one of {list(self.choices)}")

    def _grid_text(self) -> str:
        step = self.step if self.step is not None else 1.0
        points = f"{self.low:g} + k * {step:g}"
        return points if self.power is None else f"{self.power:g} ** ({points})"

    def value_bounds(self) -> tuple[float, float]:
        """Smallest and largest value the parameter takes; the rounded end values for an INT with ``power``."""
        assert self.low is not None and self.high is not None
        if self.power is None:
            return self.low, self.high
        if self.data_type is DataType.INT:
            ends = [self.decode(x) for x in self.bounds()]
        else:
            ends = [self.power ** self.low, self.power ** self.high]
        return min(ends), max(ends)

    def sample(self, rng: random.Random) -> Any:
        """Draw a value uniformly in the internal coordinate."""
        size = self.grid_size
        if size is not None:
            return self.decode(rng.randrange(size))
        low, high = self.bounds()
        return self.decode(rng.uniform(low, high))

    def to_wmla(self) -> dict[str, Any]:
        """The parameter as a WMLA response writes it (lower-case type and dataType)."""
        entry: dict[str, Any] = {"name": self.name, "type": self.param_type.value, "dataType": self.data_type.value}
        if self.param_type is ParamType.RANGE:
            low_key, high_key = _BOUND_KEYS[self.data_type]
            cast = int if self.data_type is DataType.INT and self.power is None else float
            entry[low_key] = cast(self.low)
            entry[high_key] = cast(self.high)
            if self.step is not None:
                entry["step"] = _number_text(self.step)
            if self.power is not None:
                entry["power"] = _number_text(self.power)
        else:
            entry[_LIST_KEYS[self.data_type][0]] = list(self.choices)
        return entry

    # --- parsing ------------------------------------------------------------------------------------------------

    @classmethod
    def from_wmla(cls, entry: Any, where: str) -> "Param":
        """Parse one WMLA ``hyperParams`` entry; ``where`` is its path for error messages."""
        if not isinstance(entry, Mapping):
            raise SpecError(where, "must be an object with name, type and dataType", entry,
                            'write e.g. {"name": "lr", "type": "Range", "dataType": "DOUBLE", ...}')
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{where}.name", "must be a non-empty string", name, "give every parameter a name")
        name = name.strip()
        where = f"{where} ({name})"

        raw_type = entry.get("type")
        param_type = _PARAM_TYPE_NAMES.get(str(raw_type).strip().lower()) if raw_type is not None else None
        if param_type is None:
            raise SpecError(f"{where}.type", "is not a known parameter type", raw_type, 'use "Range" or "Discrete"')
        raw_data_type = entry.get("dataType")
        data_type = _DATA_TYPE_NAMES.get(str(raw_data_type).strip().lower()) if raw_data_type is not None else None
        if data_type is None:
            raise SpecError(f"{where}.dataType", "is not a known data type", raw_data_type,
                            'use "DOUBLE", "INT" or "STR"')

        if param_type is ParamType.DISCRETE:
            return cls._discrete_from_wmla(entry, name, data_type, where)
        return cls._range_from_wmla(entry, name, data_type, where)

    @classmethod
    def _discrete_from_wmla(cls, entry: Mapping[str, Any], name: str, data_type: DataType, where: str) -> "Param":
        keys = _LIST_KEYS[data_type]
        key = next((k for k in keys if entry.get(k)), keys[0])
        raw = entry.get(key)
        if not isinstance(raw, list) or not raw:
            spellings = " or ".join(keys)
            hint = "".join(misspelling_hint(entry, k) for k in keys[:1])
            raise SpecError(f"{where}.{key}", "must be a non-empty list for a Discrete parameter" + hint, raw,
                            f"list the values to try in {spellings}")
        choices: list[Any] = []
        for i, item in enumerate(raw):
            item_where = f"{where}.{key}[{i}]"
            if data_type is DataType.STR:
                if not isinstance(item, str):
                    raise SpecError(item_where, "must be a string", item, "quote the value")
                value: Any = item
            elif data_type is DataType.INT:
                value = _integer(item, item_where, "list whole numbers in discreteIntVal")
            else:
                value = _number(item, item_where, "list numbers in discreteDbVal")
            if value in choices:
                raise SpecError(item_where, "repeats a value already listed", item, "list each value once")
            choices.append(value)
        return cls(name, data_type, ParamType.DISCRETE, choices=tuple(choices))

    @classmethod
    def _range_from_wmla(cls, entry: Mapping[str, Any], name: str, data_type: DataType, where: str) -> "Param":
        if data_type is DataType.STR:
            raise SpecError(f"{where}.type", "a STR parameter cannot be a Range", entry.get("type"),
                            'use "type": "Discrete" with discreateStrVal')
        low_key, high_key = _BOUND_KEYS[data_type]
        for key in (low_key, high_key):
            if not _present(entry, key):
                raise SpecError(f"{where}.{key}", "is missing" + misspelling_hint(entry, key),
                                fix=f"a {data_type.name} Range needs {low_key} and {high_key}")
        power = None
        if _present(entry, "power"):
            power = _number(entry["power"], f"{where}.power", "use a log base such as 10 or 2")
            if power <= 0 or power == 1:
                raise SpecError(f"{where}.power", "must be positive and not 1", entry["power"],
                                "use a log base such as 10 or 2, or leave power out for a linear scale")
        # With power the bounds are exponents, which need not be integers even for an INT parameter.
        read = _integer if data_type is DataType.INT and power is None else _number
        low = float(read(entry[low_key], f"{where}.{low_key}", "give the lower bound as a number"))
        high = float(read(entry[high_key], f"{where}.{high_key}", "give the upper bound as a number"))
        if low > high:
            raise SpecError(f"{where}.{low_key}", f"is greater than {high_key} ({high:g})", entry[low_key],
                            f"swap the bounds so that {low_key} <= {high_key}")
        step = None
        if _present(entry, "step"):
            step = _number(entry["step"], f"{where}.step", "give the grid spacing as a positive number")
            if step <= 0:
                raise SpecError(f"{where}.step", "must be positive", entry["step"],
                                "give the grid spacing as a positive number, or leave step out")
            # The same tolerance as grid_size, so a step that fits the range up to rounding makes a 2-point grid.
            if high > low and (high - low) / step + 1e-9 < 1:
                raise SpecError(f"{where}.step", f"is wider than the range {low:g}..{high:g}", entry["step"],
                                f"use a step of at most {high - low:g}")
            if data_type is DataType.INT and power is None and step != int(step):
                raise SpecError(f"{where}.step", "must be a whole number for an INT parameter", entry["step"],
                                "use an integer step")
        if power is not None:
            _check_power_bounds(entry, power, [(low_key, low), (high_key, high)], data_type, where)
        return cls(name, data_type, ParamType.RANGE, low=low, high=high, step=step, power=power)


def _check_power_bounds(entry: Mapping[str, Any], power: float, bounds: Sequence[tuple[str, float]],
                        data_type: DataType, where: str) -> None:
    """Reject exponent bounds whose values overflow or underflow a float, or round to 0 for an INT."""
    values = []
    for key, exponent in bounds:
        try:
            value = power ** exponent
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value == 0:
            raise SpecError(f"{where}.{key}", f"is an exponent out of range: {power:g} ** {exponent:g} overflows or "
                            "underflows a 64-bit float", entry[key],
                            "keep the values power ** bound between about 1e-300 and 1e300")
        values.append((value, key, exponent))
    smallest, key, exponent = min(values)
    if data_type is DataType.INT and smallest < 0.5:
        raise SpecError(f"{where}.{key}", f"gives {power:g} ** {exponent:g} = {smallest:g}, which rounds to 0 for an "
                        "INT parameter", entry[key],
                        "choose exponent bounds whose values are all at least 1, or use a DOUBLE parameter")


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters with unique names."""

    params: tuple[Param, ...]
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Param] = {}
        for param in self.params:
            if param.name in by_name:
                raise ValueError(f"duplicate parameter name {param.name!r}")
            by_name[param.name] = param
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def from_wmla(cls, entries: Any, where: str = "hyperParams") -> "SearchSpace":
        """Parse and validate a WMLA ``hyperParams`` list.

        Raises:
            SpecError: naming the entry, the field, the value and the fix.
        """
        if not isinstance(entries, list):
            raise SpecError(where, "must be a list of parameter entries", entries,
                            'write "hyperParams": [{"name": ..., "type": ..., "dataType": ...}, ...]')
        params: list[Param] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            param = Param.from_wmla(entry, f"{where}[{i}]")
            if param.name in seen:
                raise SpecError(f"{where}[{i}].name", f"repeats the name of {where}[{seen[param.name]}]",
                                param.name, "give every parameter a unique name")
            seen[param.name] = i
            params.append(param)
        return cls(tuple(params))

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def cardinality(self) -> int | None:
        """Number of distinct configurations, or ``None`` when a parameter is continuous."""
        total = 1
        for param in self.params:
            size = param.grid_size
            if size is None:
                return None
            total *= size
        return total

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {p.name: p.sample(rng) for p in self.params}

    def decode(self, coordinates: Sequence[float]) -> dict[str, Any]:
        return {p.name: p.decode(x) for p, x in zip(self.params, coordinates)}

    def encode(self, config: Mapping[str, Any]) -> list[float]:
        return [p.encode(config[p.name]) for p in self.params]

    def key(self, config: Mapping[str, Any]) -> tuple:
        """A hashable identity of a configuration, used to detect repeats.

        Grid and discrete parameters compare by index; continuous ones by value rounded to 12 digits.
        """
        parts = []
        for param in self.params:
            value = config.get(param.name)
            try:
                x = param.encode(value)
            except ValueError:
                parts.append(("raw", repr(value)))
                continue
            parts.append(int(x) if param.grid_size is not None else round(x, 12))
        return tuple(parts)

    def config_at(self, index: int) -> dict[str, Any]:
        """The configuration at a flat index of a finite space (mixed-radix, last parameter fastest)."""
        coordinates = []
        for param in reversed(self.params):
            size = param.grid_size
            assert size is not None
            index, k = divmod(index, size)
            coordinates.append(float(k))
        return self.decode(list(reversed(coordinates)))

    def check_config(self, config: Any, where: str) -> dict[str, Any]:
        """Check that ``config`` assigns an in-domain value of the right type to every parameter.

        Returns:
            The configuration with values normalised to the parameter types.

        Raises:
            SpecError: a missing, extra or out-of-domain value.
        """
        if not isinstance(config, Mapping):
            raise SpecError(where, "must be an object of parameter values", config, "return {name: value} dicts")
        missing = [name for name in self.names if name not in config]
        if missing:
            raise SpecError(where, f"has no value for {missing}", dict(config), "give a value for every parameter")
        extra = [name for name in config if name not in self._by_name]
        if extra:
            raise SpecError(where, f"names parameters not in the search space: {extra}", dict(config),
                            f"use only {self.names}")
        normalised = {}
        for param in self.params:
            value = config[param.name]
            # A whole float such as 3.0, or a numpy integer, becomes a Python int for an INT parameter.
            if param.data_type is DataType.INT and _is_real(value) and math.isfinite(value) and value == int(value):
                value = int(value)
            try:
                normalised[param.name] = param.decode(param.encode(value))
            except ValueError as exc:
                # The message of ``encode`` starts with the value, so it is not repeated as "(got ...)".
                error = SpecError(f"{where}.{param.name}", str(exc),
                                  fix="return values inside the parameter's range, on its step grid, or from its list")
                error.value = value
                raise error from None
            if param.data_type is DataType.DOUBLE and param.grid_size is None:
                normalised[param.name] = float(value)
        return normalised

    def to_wmla(self) -> list[dict[str, Any]]:
        return [p.to_wmla() for p in self.params]
