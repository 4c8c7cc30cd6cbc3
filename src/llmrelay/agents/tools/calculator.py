"""The ``calculator`` tool: arithmetic read with :mod:`ast`, never ``eval``.

Only numbers, ``+ - * / // % **``, parentheses and a few functions are accepted; powers
and results are bounded so that ``9**9**9`` is refused instead of eating the CPU.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from llmrelay.agents.tools.registry import Tool

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
}
MAX_EXPRESSION = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e100


class CalculationError(ValueError):
    """The expression is not arithmetic this calculator accepts, or has no finite value."""


def calculate(expression: str) -> Number:
    """The value of ``expression``; :class:`CalculationError` saying what is wrong."""
    if len(expression) > MAX_EXPRESSION:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        text = expression.replace("^", "**").replace("\u00d7", "*")  # the multiplication sign
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculationError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _value(tree.body)
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except (OverflowError, ValueError) as exc:
        raise CalculationError(str(exc)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculationError("the result is too large")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _value(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise CalculationError("not allowed in an expression: a boolean")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculationError(f"exponents are limited to {MAX_EXPONENT}")
        result: Number = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise CalculationError("the result is not a real number")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        unary: Number = _UNARY[type(node.op)](_value(node.operand))
        return unary
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_value(arg) for arg in node.args))
    shown = ast.unparse(node)
    raise CalculationError(f"not allowed in an expression: {shown!r}")


async def _run(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"value": calculate(arguments["expression"])}


def calculator_tool() -> Tool:
    return Tool(
        name="calculator",
        version="1.0.0",
        description="Evaluate an arithmetic expression (+ - * / // % ** and abs, round, "
        "min, max, sqrt).",
        input_schema={
            "type": "object",
            "properties": {
                "expression": {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION}
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {"value": {"type": "number"}},
            "required": ["value"],
        },
        run=_run,
        timeout_s=2.0,
        idempotent=True,
    )


__all__ = ["CalculationError", "calculate", "calculator_tool"]
