"""The regression gate: ``--fail-if "accuracy < base - 0.01"`` and ``--fail-on-regression``.

A condition is parsed with :mod:`ast` and checked node by node: numbers, metric names,
``base``/``head`` (``base.loss``, ``base["val/acc"]``, or bare ``base`` for the one metric
the condition names), ``+ - * /``, ``abs()``, comparisons, ``and``/``or``/``not``. It is
evaluated by walking that tree, never with ``eval``. A condition that holds fails the gate.

A missing base value skips the gate (the first run of a project has no base), unless the
base exists but could not be read (``Baseline.unreadable``): then the gate fails closed, so
a corrupted or cut base can never wave a regression through. A metric this run did not
log fails it too, so a notebook that stops logging cannot pass silently.

A condition is at most :data:`MAX_CONDITION` characters; longer or too deeply nested
ones are refused with a ConfigError rather than exhausting the parser.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cml_nb.errors import ConfigError, RegressionError
from cml_nb.history.base import MAX, MIN, _number

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_SIDES = ("base", "head")
_EXAMPLE = 'write e.g. --fail-if "accuracy < base - 0.01"'
#: The longest ``--fail-if`` condition accepted: real ones are a line; a megabyte of
#: ``1+1+...`` would exhaust the parser's recursion.
MAX_CONDITION = 1000


@dataclass(frozen=True)
class Gate:
    """A parsed condition; ``metrics`` are the metric names it reads."""

    text: str
    tree: ast.Expression
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class GateResult:
    """``status`` is ``passed``, ``failed`` or ``skipped``; ``reason`` says why in one line."""

    gate: str
    status: str
    reason: str

    @property
    def failed(self) -> bool:
        """Whether this gate blocks the change."""
        return self.status == "failed"


def _dotted(node: ast.expr) -> list[str] | None:
    # ``train.loss`` parses as attribute access; flattened metrics use that very name.
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and (parts := _dotted(node.value)) is not None:
        return [*parts, node.attr]
    return None


def _reference(node: ast.expr) -> tuple[str, str | None] | None:
    """``(side, metric)`` for a metric reference; metric None means the implicit one."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        key = node.slice
        if node.value.id in _SIDES and isinstance(key, ast.Constant) and isinstance(key.value, str):
            return node.value.id, key.value
        return None
    parts = _dotted(node)
    if parts is None or any(p.startswith("__") for p in parts):  # dunders: never a metric
        return None
    if parts[0] in _SIDES:
        return parts[0], ".".join(parts[1:]) or None
    return "head", ".".join(parts)


def _check(node: ast.AST, text: str, names: list[str]) -> None:
    """Refuse anything but the small grammar; collect the metric names."""
    if isinstance(node, ast.Expression):
        _check(node.body, text, names)
    elif isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
        ref = _reference(node)
        if ref is None:
            raise ConfigError(
                f"--fail-if {text!r}: {ast.unparse(node)!r} is not a metric; {_EXAMPLE}"
            )
        names.append(ref[1] or "")  # "" marks bare base/head: the implicit metric
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ConfigError(f"--fail-if {text!r}: only numbers may be constants; {_EXAMPLE}")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, text, names)
        _check(node.right, text, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
        _check(node.operand, text, names)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        for child in (node.left, *node.comparators):
            _check(child, text, names)
    elif isinstance(node, ast.BoolOp):
        for child in node.values:
            _check(child, text, names)
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "abs"
        and len(node.args) == 1
        and not node.keywords
    ):
        _check(node.args[0], text, names)
    else:
        raise ConfigError(
            f"--fail-if {text!r}: {type(node).__name__} is not allowed (only metrics, numbers, "
            f"+ - * /, abs(), comparisons, and/or/not); {_EXAMPLE}"
        )


def parse_gate(text: str) -> Gate:
    """Parse and validate a ``--fail-if`` condition.

    Raises:
        ConfigError: the text is not a condition of the allowed grammar, or bare
            ``base``/``head`` is ambiguous (the condition names several metrics).
    """
    if len(text) > MAX_CONDITION:
        raise ConfigError(
            f"--fail-if condition is {len(text)} characters, over the limit of "
            f"{MAX_CONDITION}: split it into several --fail-if options"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
        names: list[str] = []
        _check(tree, text, names)
    except SyntaxError as exc:
        raise ConfigError(
            f"--fail-if {text!r} is not a valid condition ({exc.msg}); {_EXAMPLE}"
        ) from exc
    except (RecursionError, MemoryError):
        raise ConfigError(
            f"--fail-if {text[:40]!r}... is nested too deeply: split it into several "
            "--fail-if options"
        ) from None
    body = tree.body
    if not isinstance(body, ast.Compare | ast.BoolOp) and not (
        isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not)
    ):
        raise ConfigError(f"--fail-if {text!r} must be a comparison; {_EXAMPLE}")
    metrics = tuple(n for n in dict.fromkeys(names) if n)
    implicit = "" in names
    if implicit and len(metrics) != 1:
        raise ConfigError(
            f"--fail-if {text!r}: bare 'base' needs exactly one metric in the condition; "
            f"name it, e.g. base.accuracy"
        )
    return Gate(text.strip(), tree, metrics)


def regression_gate(spec: str, goals: Mapping[str, str] | None = None) -> Gate:
    """``METRIC:TOLERANCE`` as a gate that fails when METRIC got worse by more than TOLERANCE.

    TOLERANCE is absolute (``accuracy:0.01``) or relative to the base (``loss:5%``);
    "worse" follows the metric's goal (higher is better unless ``goals`` says ``min``).
    """
    name, sep, tolerance = spec.rpartition(":")
    name, tolerance = name.strip(), tolerance.strip()
    relative = tolerance.endswith("%")
    try:
        amount = float(tolerance.rstrip("%")) / (100 if relative else 1)
    except ValueError:
        amount = -1.0
    if not sep or not name or not 0 <= amount < math.inf:
        raise ConfigError(
            f"--fail-on-regression {spec!r} is not METRIC:TOLERANCE; "
            "write e.g. accuracy:0.01 or loss:5%"
        )
    goal = (goals or {}).get(name, MAX)
    if goal not in (MAX, MIN):
        raise ConfigError(f"goal of {name!r} is {goal!r}: use max or min")
    if name.isidentifier() and not keyword.iskeyword(name) and name not in (*_SIDES, "abs"):
        head_term, base_term = name, "base"
    else:  # names like "val/acc" or "train.loss" are safest as subscripts
        head_term, base_term = f"head[{json.dumps(name)}]", f"base[{json.dumps(name)}]"
    allowed = f"abs({base_term}) * {amount!r}" if relative else repr(amount)
    worse = f"< {base_term} - " if goal == MAX else f"> {base_term} + "
    text = f"{head_term} {worse}{allowed}"
    return parse_gate(text)


class _Missing(Exception):
    def __init__(self, side: str, name: str) -> None:
        super().__init__(side, name)
        self.side, self.name = side, name


def _value(
    gate: Gate, side: str, name: str | None, head: Mapping[str, Any], base: Mapping[str, Any]
) -> float:
    metric = name if name is not None else gate.metrics[0]
    values = head if side == "head" else base
    number = _number(values.get(metric))
    if number is None:
        raise _Missing(side, metric)
    return number


def _eval(gate: Gate, node: ast.AST, head: Mapping[str, Any], base: Mapping[str, Any]) -> Any:
    def walk(child: ast.AST) -> Any:
        return _eval(gate, child, head, base)

    if isinstance(node, ast.Expression):
        return walk(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
        side, name = _reference(node) or ("head", None)
        return _value(gate, side, name, head, base)
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](walk(node.left), walk(node.right))
    if isinstance(node, ast.UnaryOp):
        operand = walk(node.operand)
        return (
            not operand
            if isinstance(node.op, ast.Not)
            else (-operand if isinstance(node.op, ast.USub) else operand)
        )
    if isinstance(node, ast.Call):
        return abs(walk(node.args[0]))
    if isinstance(node, ast.BoolOp):
        values = (walk(v) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    assert isinstance(node, ast.Compare)
    left = walk(node.left)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = walk(right_node)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _values_text(gate: Gate, head: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    parts = []
    for name in gate.metrics:
        parts.append(
            f"{name} {head.get(name)!r}" + (f", base {base[name]!r}" if name in base else "")
        )
    return "; ".join(parts)


def evaluate(
    gate: Gate, head: Mapping[str, Any], base: Mapping[str, Any], *, base_unreadable: str = ""
) -> GateResult:
    """Check one gate against this run's metrics (``head``) and the base's.

    ``base_unreadable`` says why a base that exists could not be read; a gate that needs
    a base value then fails (closed) with that reason instead of being skipped.
    """
    try:
        holds = bool(_eval(gate, gate.tree, head, base))
    except _Missing as missing:
        if missing.side == "base" and base_unreadable:
            return GateResult(
                gate.text,
                "failed",
                f"the base could not be read ({base_unreadable}); fix or republish it",
            )
        if missing.side == "base":
            return GateResult(gate.text, "skipped", f"no base value for {missing.name}")
        return GateResult(gate.text, "failed", f"this run logged no number for {missing.name}")
    except ZeroDivisionError:
        return GateResult(gate.text, "skipped", "division by zero (a base value is 0)")
    except RecursionError:
        return GateResult(gate.text, "failed", "the condition is nested too deeply to evaluate")
    values = _values_text(gate, head, base)
    return GateResult(gate.text, "failed" if holds else "passed", values)


def check_gates(
    gates: Iterable[Gate],
    head: Mapping[str, Any],
    base: Mapping[str, Any],
    *,
    base_unreadable: str = "",
) -> list[GateResult]:
    """Every gate's result, in order (``base_unreadable``: see :func:`evaluate`)."""
    return [evaluate(gate, head, base, base_unreadable=base_unreadable) for gate in gates]


def enforce(results: Iterable[GateResult]) -> None:
    """Raise RegressionError (exit 6) naming every failed gate; do nothing when all pass.

    Raises:
        RegressionError: at least one gate failed.
    """
    failed = [r for r in results if r.failed]
    if failed:
        what = "; ".join(f"{r.gate} ({r.reason})" for r in failed)
        raise RegressionError(
            f"regression gate failed: {what}: the change made the model worse than allowed; "
            "fix it, or relax --fail-if / --fail-on-regression"
        )
