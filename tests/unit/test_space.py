"""Unit tests for hpo_core.space: parsing WMLA ``hyperParams``, validation, sampling and typed values."""

from __future__ import annotations

import json
import math
import random
import re

import numpy as np
import pytest

from hpo_core.errors import SpecError
from hpo_core.space import DataType, ParamType, SearchSpace


def double_range(name: str = "x", low=0.0, high=1.0, **extra) -> dict:
    return {"name": name, "type": "Range", "dataType": "DOUBLE", "minDbVal": low, "maxDbVal": high, **extra}


def int_range(name: str = "n", low=1, high=10, **extra) -> dict:
    return {"name": name, "type": "Range", "dataType": "INT", "minIntVal": low, "maxIntVal": high, **extra}


def discrete(name: str, data_type: str, values: list, key: str | None = None) -> dict:
    key = key or {"DOUBLE": "discreteDbVal", "INT": "discreteIntVal", "STR": "discreateStrVal"}[data_type]
    return {"name": name, "type": "Discrete", "dataType": data_type, key: values}


def parse_one(entry: dict):
    return SearchSpace.from_wmla([entry]).params[0]


def grid_values(param) -> list:
    return [param.decode(k) for k in range(param.grid_size)]


def assert_spec_error(error: SpecError, field: str, value=None) -> None:
    """Check that the error names the field path, the bad value (when there is one) and a fix."""
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    if value is not None:
        assert f"(got {value!r})" in str(error)
    assert error.fix
    assert f"Fix: {error.fix}" in str(error)


# --- parsing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "param_type", "data_type", "low", "high", "choices"), [
    (double_range(low=0.001, high=0.1), ParamType.RANGE, DataType.DOUBLE, 0.001, 0.1, ()),
    (int_range(low=2, high=14), ParamType.RANGE, DataType.INT, 2.0, 14.0, ()),
    (discrete("d", "DOUBLE", [0.1, 0.5]), ParamType.DISCRETE, DataType.DOUBLE, None, None, (0.1, 0.5)),
    (discrete("i", "INT", [1, 3, 5]), ParamType.DISCRETE, DataType.INT, None, None, (1, 3, 5)),
    (discrete("s", "STR", ["sgd", "adam"]), ParamType.DISCRETE, DataType.STR, None, None, ("sgd", "adam")),
], ids=["range-double", "range-int", "discrete-double", "discrete-int", "discrete-str"])
def test_param_parses_each_type(entry, param_type, data_type, low, high, choices):
    param = parse_one(entry)

    assert param.param_type is param_type
    assert param.data_type is data_type
    assert param.low == low
    assert param.high == high
    assert param.choices == choices


def test_param_int_range_includes_max():
    param = parse_one(int_range(low=2, high=14))

    assert param.grid_size == 13
    assert grid_values(param) == list(range(2, 15))
    assert max(param.sample(random.Random(seed)) for seed in range(300)) == 14


def test_param_step_grid_starts_at_min():
    param = parse_one(double_range("lr", 0.001, 0.1, step="0.002"))
    values = grid_values(param)

    assert param.grid_size == 50
    assert values[0] == 0.001
    # 0.002 does not divide 0.099, so the grid stops at the last point below max.
    assert values[-1] == 0.099
    for value in values:
        thousandths = value * 1000
        assert 0.001 <= value <= 0.1
        assert abs(thousandths - round(thousandths)) < 1e-9
        assert round(thousandths) % 2 == 1


def test_param_step_samples_stay_on_grid():
    param = parse_one(double_range("lr", 0.001, 0.1, step="0.002"))
    grid = set(grid_values(param))

    samples = [param.sample(random.Random(seed)) for seed in range(500)]

    assert set(samples) <= grid
    assert len(set(samples)) > 40


@pytest.mark.parametrize(("entry", "last"), [
    (double_range(low=0.01, high=1, step=0.01), 1.0),
    (double_range(low=0.01, high=1, step="0.01"), 1.0),
    (double_range(low=0, high=1, step=0.1), 1.0),
    (double_range(low=0.1, high=0.7, step=0.2), 0.7),
    (double_range(low=1e-6, high=1e-3, step=1e-6), 1e-3),
    (int_range(low=0, high=10, step=2), 10),
    (int_range(low=0, high=9, step=2), 8),
    (int_range(low=32, high=256, step="32"), 256),
], ids=["0.01-1-by-0.01", "step-as-string", "0-1-by-0.1", "0.1-0.7-by-0.2", "micro-steps", "int-even",
        "int-step-not-dividing", "int-by-32"])
def test_param_step_grid_reaches_max_when_step_divides(entry, last):
    param = parse_one(entry)
    values = grid_values(param)

    assert values[-1] == last
    assert all(param.low <= value <= param.high for value in values)
    assert values == sorted(set(values))


def test_param_step_grid_prints_short_decimals():
    param = parse_one(double_range(low=0.01, high=1, step=0.01))

    values = grid_values(param)

    assert values[46] == 0.47
    assert values[50] == 0.51
    assert all(value == round(value, 2) for value in values)


def test_param_power_samples_on_log_scale():
    param = parse_one(double_range("lr", -4, -1, power="10"))
    samples = [param.sample(random.Random(seed)) for seed in range(400)]

    assert param.is_log
    assert param.bounds() == (-4.0, -1.0)
    assert all(1e-4 <= value <= 1e-1 for value in samples)
    # Uniform in the exponent: each decade gets about a third of the draws.
    decades = [sum(1 for v in samples if 10.0 ** e <= v < 10.0 ** (e + 1)) for e in (-4, -3, -2)]
    assert all(count > 80 for count in decades)


@pytest.mark.parametrize("x", [-2.0, -0.5, 0.0, 1.25, 5.0])
def test_param_power_decodes_exponent(x):
    param = parse_one(double_range("lambda", -2, 5, power=10))

    assert param.decode(x) == pytest.approx(10.0 ** x)
    assert param.encode(10.0 ** x) == pytest.approx(x)


def test_param_power_with_base_below_one():
    param = parse_one(double_range("decay", 0, 3, power=0.5))

    assert param.decode(3) == pytest.approx(0.125)
    assert param.value_bounds() == (pytest.approx(0.125), 1.0)


@pytest.mark.parametrize("key", ["discreateStrVal", "discreteStrVal"])
def test_param_accepts_both_str_list_spellings(key):
    param = parse_one(discrete("opt", "STR", ["sgd", "adam"], key=key))

    assert param.choices == ("sgd", "adam")


def test_param_reads_numbers_written_as_strings():
    space = SearchSpace.from_wmla([
        double_range("lr", "0.001", "0.1", step="0.002"),
        int_range("n", "10", "20", step="2"),
        double_range("wd", "-4", "-1", power="10"),
        discrete("i", "INT", ["1", "2", "3"]),
        discrete("d", "DOUBLE", ["0.5", 1]),
    ])

    assert (space["lr"].low, space["lr"].high, space["lr"].step) == (0.001, 0.1, 0.002)
    assert (space["n"].low, space["n"].high, space["n"].step) == (10.0, 20.0, 2.0)
    assert space["wd"].power == 10.0
    assert space["i"].choices == (1, 2, 3)
    assert space["d"].choices == (0.5, 1.0)


@pytest.mark.parametrize(("param_type", "data_type"), [
    ("range", "double"), ("RANGE", "DOUBLE"), ("Range", "Double"), (" range ", "float"),
])
def test_param_reads_range_enums_in_any_case(param_type, data_type):
    param = parse_one({"name": "x", "type": param_type, "dataType": data_type, "minDbVal": 0, "maxDbVal": 1})

    assert param.param_type is ParamType.RANGE
    assert param.data_type is DataType.DOUBLE


@pytest.mark.parametrize(("data_type", "expected"), [
    ("STR", DataType.STR), ("str", DataType.STR), ("STRING", DataType.STR), ("string", DataType.STR),
    ("INT", DataType.INT), ("int", DataType.INT), ("Integer", DataType.INT),
])
def test_param_reads_discrete_data_types_in_any_case(data_type, expected):
    values = ["a", "b"] if expected is DataType.STR else [1, 2]
    key = "discreateStrVal" if expected is DataType.STR else "discreteIntVal"
    param = parse_one({"name": "p", "type": "DISCRETE", "dataType": data_type, key: values})

    assert param.data_type is expected
    assert param.param_type is ParamType.DISCRETE


def test_param_ignores_fields_of_other_types():
    # WMLA clients send every field and zero-fill or empty the ones that do not apply.
    entry = double_range("lr", 0.001, 0.1, minIntVal=0, maxIntVal=0, discreteDbVal=[], discreteIntVal=[],
                         discreateStrVal=[], step="", power="")
    param = parse_one(entry)

    assert (param.low, param.high) == (0.001, 0.1)
    assert param.step is None
    assert param.power is None
    assert param.grid_size is None


def test_param_discrete_ignores_range_fields():
    entry = discrete("opt", "STR", ["sgd"]) | {"minDbVal": 0, "maxDbVal": 0, "minIntVal": 0, "maxIntVal": 0,
                                                 "discreteIntVal": [], "step": 0, "power": 0}
    param = parse_one(entry)

    assert param.choices == ("sgd",)


# --- rejections -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "field", "value"), [
    (double_range("x", 2, 1), "hyperParams[0] (x).minDbVal", 2),
    (int_range("n", 10, "3"), "hyperParams[0] (n).minIntVal", 10),
    (discrete("d", "DOUBLE", []), "hyperParams[0] (d).discreteDbVal", []),
    (discrete("i", "INT", []), "hyperParams[0] (i).discreteIntVal", []),
    ({"name": "s", "type": "Discrete", "dataType": "STR"}, "hyperParams[0] (s).discreateStrVal", None),
    (double_range("x", step=0), "hyperParams[0] (x).step", 0),
    (double_range("x", step="-0.1"), "hyperParams[0] (x).step", "-0.1"),
    (double_range("x", 0, 1, step=2), "hyperParams[0] (x).step", 2),
    (int_range("n", 1, 5, step=5), "hyperParams[0] (n).step", 5),
    (int_range("n", 1, 5, step=1.5), "hyperParams[0] (n).step", 1.5),
    (double_range("x", step="abc"), "hyperParams[0] (x).step", "abc"),
    (double_range("x", power=0), "hyperParams[0] (x).power", 0),
    (double_range("x", power="-10"), "hyperParams[0] (x).power", "-10"),
    (double_range("x", power=1), "hyperParams[0] (x).power", 1),
    (double_range("x", power="1"), "hyperParams[0] (x).power", "1"),
    (double_range("x") | {"type": "Choice"}, "hyperParams[0] (x).type", "Choice"),
    ({"name": "x", "dataType": "DOUBLE", "minDbVal": 0, "maxDbVal": 1}, "hyperParams[0] (x).type", None),
    (double_range("x") | {"dataType": "BOOL"}, "hyperParams[0] (x).dataType", "BOOL"),
    (int_range("n", 1.5, 4), "hyperParams[0] (n).minIntVal", 1.5),
    (int_range("n", 1, "4.2"), "hyperParams[0] (n).maxIntVal", "4.2"),
    (double_range("x", 0, float("nan")), "hyperParams[0] (x).maxDbVal", float("nan")),
    (double_range("x", 0, "NaN"), "hyperParams[0] (x).maxDbVal", "NaN"),
    (double_range("x", float("-inf"), 1), "hyperParams[0] (x).minDbVal", float("-inf")),
    (double_range("x", 0, "inf"), "hyperParams[0] (x).maxDbVal", "inf"),
    (double_range("x", 0, True), "hyperParams[0] (x).maxDbVal", True),
    ({"name": "s", "type": "Range", "dataType": "STR", "minDbVal": 0, "maxDbVal": 1}, "hyperParams[0] (s).type",
     "Range"),
    (discrete("i", "INT", [1, 2.5]), "hyperParams[0] (i).discreteIntVal[1]", 2.5),
    (discrete("s", "STR", ["a", 3]), "hyperParams[0] (s).discreateStrVal[1]", 3),
    (discrete("d", "DOUBLE", [0.1, "x"]), "hyperParams[0] (d).discreteDbVal[1]", "x"),
    (discrete("s", "STR", ["a", "b", "a"]), "hyperParams[0] (s).discreateStrVal[2]", "a"),
    (double_range("x", 0, 400, power=10), "hyperParams[0] (x).maxDbVal", 400),
    (double_range("x", -400, 0, power=10), "hyperParams[0] (x).minDbVal", -400),
    (int_range("n", -2, 2, power=10), "hyperParams[0] (n).minIntVal", -2),
    ({"name": " ", "type": "Range", "dataType": "DOUBLE"}, "hyperParams[0].name", " "),
], ids=["min-above-max", "int-min-above-max", "empty-double-list", "empty-int-list", "no-str-list", "step-zero",
        "step-negative", "step-wider-than-range", "int-step-wider-than-range", "int-step-fraction",
        "step-not-a-number", "power-zero", "power-negative", "power-one", "power-one-string", "unknown-type",
        "missing-type", "unknown-data-type", "int-min-fraction", "int-max-fraction-string", "nan-bound",
        "nan-string-bound", "inf-bound", "inf-string-bound", "bool-bound", "str-range", "int-list-fraction",
        "str-list-number", "double-list-text", "duplicate-choice", "power-overflow", "power-underflow",
        "int-power-rounds-to-zero", "blank-name"])
def test_param_rejects_invalid_entry(entry, field, value):
    with pytest.raises(SpecError) as caught:
        SearchSpace.from_wmla([entry])

    assert_spec_error(caught.value, field, value)


@pytest.mark.parametrize(("entry", "field"), [
    ({"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0}, "hyperParams[0] (x).maxDbVal"),
    (double_range("x", low=""), "hyperParams[0] (x).minDbVal"),
    ({"name": "n", "type": "Range", "dataType": "INT", "minDbVal": 0, "maxDbVal": 5}, "hyperParams[0] (n).minIntVal"),
], ids=["no-max", "empty-min", "int-with-double-bounds"])
def test_param_rejects_missing_bound(entry, field):
    with pytest.raises(SpecError) as caught:
        SearchSpace.from_wmla([entry])

    assert_spec_error(caught.value, field)
    assert "is missing" in str(caught.value)


def test_space_rejects_duplicate_names():
    with pytest.raises(SpecError) as caught:
        SearchSpace.from_wmla([double_range("lr"), int_range("n"), double_range("lr", 0, 2)])

    assert_spec_error(caught.value, "hyperParams[2].name", "lr")
    assert "hyperParams[0]" in str(caught.value)


@pytest.mark.parametrize("entries", [{"name": "x"}, "lr", None], ids=["object", "string", "null"])
def test_space_rejects_non_list(entries):
    with pytest.raises(SpecError) as caught:
        SearchSpace.from_wmla(entries)

    assert_spec_error(caught.value, "hyperParams", entries)


def test_space_rejects_non_object_entry():
    with pytest.raises(SpecError) as caught:
        SearchSpace.from_wmla([double_range(), "lr"])

    assert_spec_error(caught.value, "hyperParams[1]", "lr")


def test_param_accepts_step_equal_to_range():
    param = parse_one(double_range("x", 0.1, 0.3, step=0.2))

    assert grid_values(param) == [0.1, 0.3]


# --- types of values --------------------------------------------------------------------------------------------


INT_ENTRIES = [
    int_range("plain", 1, 14),
    int_range("stepped", 0, 100, step=5),
    int_range("log", 0, 10, power=2),
    int_range("log_stepped", 0, 3.3, power=2, step=1.1),
    discrete("listed", "INT", [8, 16, 32]),
]


@pytest.fixture
def int_space() -> SearchSpace:
    return SearchSpace.from_wmla(INT_ENTRIES)


def test_space_int_samples_are_python_ints(int_space):
    for seed in range(200):
        config = int_space.sample(random.Random(seed))
        for name, value in config.items():
            assert type(value) is int, (name, value)


def test_space_int_samples_print_without_decimal_point(int_space):
    text = json.dumps([int_space.sample(random.Random(seed)) for seed in range(50)])

    assert ".0" not in text
    assert not re.search(r"\d\.\d", text)


@pytest.mark.parametrize("x", [0.0, 0.4, 0.6, 1.0, 2.49, 1e9, -5.0])
def test_param_int_decode_returns_int(int_space, x):
    for param in int_space:
        value = param.decode(x)
        assert type(value) is int, (param.name, value)


@pytest.mark.parametrize("value", [6.0, np.int64(6), np.float64(6.0), np.int32(6), 6])
def test_space_check_config_makes_int_values_python_ints(value):
    space = SearchSpace.from_wmla([int_range("n", 0, 10), discrete("i", "INT", [3, 6])])

    config = space.check_config({"n": value, "i": value}, "proposal")

    assert type(config["n"]) is int
    assert type(config["i"]) is int
    assert config == {"n": 6, "i": 6}


def test_space_check_config_returns_sampled_config_unchanged(int_space):
    for seed in range(50):
        config = int_space.sample(random.Random(seed))
        checked = int_space.check_config(config, "proposal")

        assert checked == config
        assert [type(v) for v in checked.values()] == [int] * len(INT_ENTRIES)


def test_param_int_power_rounded_ends_stay_valid():
    # 2 ** 3.3 = 9.85 is decoded as 10, which must still count as inside the range.
    param = parse_one(int_range("n", 0, 3.3, power=2))
    space = SearchSpace((param,))

    assert param.value_bounds() == (1, 10)
    for value in range(1, 11):
        assert space.check_config({"n": value}, "proposal") == {"n": value}


def test_space_double_values_are_floats():
    space = SearchSpace.from_wmla([double_range("x", 0, 10), double_range("g", 0, 10, step=1),
                                   discrete("d", "DOUBLE", [1, 2])])

    config = space.check_config({"x": 3, "g": 4, "d": 2}, "proposal")

    assert config == {"x": 3.0, "g": 4.0, "d": 2.0}
    assert all(type(value) is float for value in config.values())
    assert all(type(value) is float for value in space.sample(random.Random(0)).values())


# --- encode, decode and check_config ----------------------------------------------------------------------------


ALL_ENTRIES = INT_ENTRIES + [
    double_range("x", -1, 1),
    double_range("lr", 0.001, 0.1, step="0.002"),
    double_range("wd", -6, -2, power=10),
    double_range("wd_stepped", -6, -2, power=10, step=0.5),
    discrete("d", "DOUBLE", [0.1, 0.25]),
    discrete("s", "STR", ["sgd", "adam", "rmsprop"], key="discreteStrVal"),
]


@pytest.mark.parametrize("entry", ALL_ENTRIES, ids=[entry["name"] for entry in ALL_ENTRIES])
def test_param_encode_inverts_decode(entry):
    param = parse_one(entry)
    low, high = param.bounds()
    coordinates = range(param.grid_size) if param.grid_size else np.linspace(low, high, 25)

    for x in coordinates:
        value = param.decode(x)
        assert param.decode(param.encode(value)) == pytest.approx(value)
        if param.grid_size:
            assert param.encode(value) == x
        elif param.data_type is DataType.DOUBLE:
            assert param.encode(value) == pytest.approx(x)


@pytest.mark.parametrize("entry", ALL_ENTRIES, ids=[entry["name"] for entry in ALL_ENTRIES])
def test_param_decode_clips_to_bounds(entry):
    param = parse_one(entry)
    low, high = param.bounds()

    assert param.decode(low - 100) == param.decode(low)
    assert param.decode(high + 100) == param.decode(high)


@pytest.mark.parametrize(("config", "field", "value"), [
    ({"n": 11, "lr": 0.003, "opt": "sgd"}, "proposal.n", 11),
    ({"n": 2.5, "lr": 0.003, "opt": "sgd"}, "proposal.n", 2.5),
    ({"n": "3", "lr": 0.003, "opt": "sgd"}, "proposal.n", "3"),
    ({"n": True, "lr": 0.003, "opt": "sgd"}, "proposal.n", True),
    ({"n": 3, "lr": 0.004, "opt": "sgd"}, "proposal.lr", 0.004),
    ({"n": 3, "lr": 0.2, "opt": "sgd"}, "proposal.lr", 0.2),
    ({"n": 3, "lr": float("nan"), "opt": "sgd"}, "proposal.lr", float("nan")),
    ({"n": 3, "lr": 0.003, "opt": "SGD"}, "proposal.opt", "SGD"),
    ({"n": 3, "lr": 0.003}, "proposal", {"n": 3, "lr": 0.003}),
    ({"n": 3, "lr": 0.003, "opt": "sgd", "extra": 1}, "proposal", {"n": 3, "lr": 0.003, "opt": "sgd", "extra": 1}),
], ids=["int-above-max", "int-fraction", "int-as-text", "bool", "off-grid", "above-grid", "nan",
        "wrong-case-choice", "missing-param", "extra-param"])
def test_space_check_config_rejects_invalid_value(config, field, value):
    space = SearchSpace.from_wmla([int_range("n", 1, 10), double_range("lr", 0.001, 0.1, step=0.002),
                                   discrete("opt", "STR", ["sgd", "adam"])])

    with pytest.raises(SpecError) as caught:
        space.check_config(config, "proposal")

    assert_spec_error(caught.value, field)
    assert repr(caught.value.value) == repr(value)
    assert str(caught.value).count(repr(value)) == 1  # the value is shown once, not repeated as "(got ...)"


def test_space_check_config_snaps_to_grid():
    space = SearchSpace.from_wmla([double_range("lr", 0.01, 1, step=0.01)])

    assert space.check_config({"lr": 0.1 + 0.2}, "proposal") == {"lr": 0.3}


def test_space_key_identifies_configurations():
    space = SearchSpace.from_wmla([int_range("n", 1, 10), double_range("x", 0, 1)])

    assert space.key({"n": 3, "x": 0.5}) == space.key({"n": 3.0, "x": 0.5})
    assert space.key({"n": 3, "x": 0.5}) != space.key({"n": 4, "x": 0.5})
    assert space.key({"n": 3, "x": 0.5}) != space.key({"n": 3, "x": 0.25})
    # A value outside the space still gets a key, so a hand-made trial can be compared.
    assert space.key({"n": 99, "x": 0.5}) != space.key({"n": 10, "x": 0.5})


def test_space_config_at_enumerates_every_configuration():
    space = SearchSpace.from_wmla([int_range("n", 1, 3), discrete("opt", "STR", ["a", "b"]),
                                   double_range("lr", 0.1, 0.3, step=0.1)])

    configs = [space.config_at(i) for i in range(space.cardinality)]

    assert space.cardinality == 18
    assert len({space.key(config) for config in configs}) == 18
    assert configs[0] == {"n": 1, "opt": "a", "lr": 0.1}
    assert configs[-1] == {"n": 3, "opt": "b", "lr": 0.3}


def test_space_cardinality_is_none_with_continuous_param():
    space = SearchSpace.from_wmla([int_range("n", 1, 3), double_range("x")])

    assert space.cardinality is None


def test_space_to_wmla_parses_back_to_same_space():
    space = SearchSpace.from_wmla(ALL_ENTRIES + [double_range("fine", 0, 1, step="0.0001234567")])

    written = space.to_wmla()

    assert SearchSpace.from_wmla(json.loads(json.dumps(written))) == space
    assert written[0]["type"] == "range"
    assert written[0]["dataType"] == "int"
    assert space["lr"].to_wmla()["step"] == "0.002"
    assert space["wd"].to_wmla()["power"] == "10"


def test_space_lookup_by_name():
    space = SearchSpace.from_wmla([int_range("n"), double_range("x")])

    assert space.names == ["n", "x"]
    assert "x" in space
    assert "y" not in space
    assert space["x"].data_type is DataType.DOUBLE
    assert len(space) == 2
    assert math.isclose(space["x"].high, 1.0)
