"""The regression gate: parsed with ast, never eval'd; fails and passes as it should."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cml_nb.errors import EXIT_REGRESSION, ConfigError, RegressionError
from cml_nb.history import check_gates, enforce, evaluate, parse_gate, regression_gate

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
tolerance = st.floats(min_value=0, max_value=1e3, allow_nan=False)


@pytest.mark.parametrize(
    ("condition", "head", "base", "status"),
    [
        ("accuracy < base - 0.01", {"accuracy": 0.91}, {"accuracy": 0.93}, "failed"),
        ("accuracy < base - 0.01", {"accuracy": 0.925}, {"accuracy": 0.93}, "passed"),
        ("loss > base * 1.1", {"loss": 0.5}, {"loss": 0.4}, "failed"),
        ("accuracy < 0.8", {"accuracy": 0.85}, {}, "passed"),  # no base needed
        (
            "base.accuracy - accuracy > 0.05 or loss > 2",
            {"accuracy": 0.9, "loss": 3},
            {"accuracy": 0.9},
            "failed",
        ),
        ('head["val/acc"] < base["val/acc"]', {"val/acc": 0.5}, {"val/acc": 0.6}, "failed"),
        ("train.loss > base.train.loss", {"train.loss": 1.0}, {"train.loss": 2.0}, "passed"),
        ("abs(accuracy - base) > 0.1", {"accuracy": 0.5}, {"accuracy": 0.7}, "failed"),
        ("not accuracy >= 0.9", {"accuracy": 0.95}, {}, "passed"),
        ("0.5 < accuracy < 0.9", {"accuracy": 0.7}, {}, "failed"),
        ("accuracy < base - 0.01", {"accuracy": 0.9}, {}, "skipped"),  # first run: no base
        ("accuracy < base - 0.01", {}, {"accuracy": 0.9}, "failed"),  # stopped logging it
        ("accuracy < base - 0.01", {"accuracy": None}, {"accuracy": 0.9}, "failed"),  # NaN
        ("accuracy / base < 0.9", {"accuracy": 0.9}, {"accuracy": 0}, "skipped"),
    ],
)
def test_conditions(condition: str, head: dict, base: dict, status: str) -> None:
    assert evaluate(parse_gate(condition), head, base).status == status


@pytest.mark.parametrize(
    "condition",
    [
        '__import__("os").system("touch /tmp/h/pwned") < 1',
        "accuracy",  # not a comparison
        "().__class__ < 1",
        "accuracy.__class__.__bases__ < 1",
        "x < 'text'",
        "lambda: 1 < 2",
        "[accuracy][0] < 1",
        "accuracy ** 1000000 < 1",
        "accuracy if 1 else 2 < 3",
        "base < head",  # bare base names no metric
        "accuracy < base + loss",  # bare base with two metrics: ambiguous
        "accuracy <",
        "open('x') < 1",
    ],
)
def test_refuses_anything_outside_the_grammar(
    condition: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with pytest.raises(ConfigError, match="--fail-if"):
        parse_gate(condition)


def test_enforce_raises_exit_6_with_the_reason() -> None:
    results = check_gates(
        [parse_gate("accuracy < base - 0.01"), parse_gate("loss > 1")],
        {"accuracy": 0.80, "loss": 0.5}, {"accuracy": 0.93},
    )  # fmt: skip
    with pytest.raises(RegressionError) as info:
        enforce(results)
    assert info.value.exit_code == EXIT_REGRESSION == 6
    message = str(info.value)
    assert "accuracy < base - 0.01" in message and "accuracy 0.8, base 0.93" in message
    assert "loss > 1" not in message and "\n" not in message
    enforce(check_gates([parse_gate("loss > 1")], {"loss": 0.5}, {}))  # passes: no error


def test_fail_on_regression_texts() -> None:
    assert regression_gate("accuracy:0.01").text == "accuracy < base - 0.01"
    assert regression_gate("loss:5%", {"loss": "min"}).text == "loss > base + abs(base) * 0.05"
    assert regression_gate("val/acc:0").text == 'head["val/acc"] < base["val/acc"] - 0.0'
    assert regression_gate("base:0.1").text == 'head["base"] < base["base"] - 0.1'
    assert regression_gate("not:0.1").text == 'head["not"] < base["not"] - 0.1'
    for bad in ["accuracy", "accuracy:", "accuracy:-1", ":0.1", "accuracy:abc", "a:inf", "a:nan"]:
        with pytest.raises(ConfigError, match="METRIC:TOLERANCE"):
            regression_gate(bad)


@given(head=finite, base=finite, tol=tolerance)
def test_max_goal_fails_exactly_when_worse_than_tolerance(
    head: float, base: float, tol: float
) -> None:
    result = evaluate(regression_gate(f"m:{tol!r}"), {"m": head}, {"m": base})
    assert result.failed == (head < base - tol)


@given(head=finite, base=finite, tol=st.floats(min_value=0, max_value=100))
def test_min_goal_relative_tolerance(head: float, base: float, tol: float) -> None:
    result = evaluate(
        regression_gate(f"loss:{tol!r}%", {"loss": "min"}), {"loss": head}, {"loss": base}
    )
    assert result.failed == (head > base + abs(base) * (tol / 100))
