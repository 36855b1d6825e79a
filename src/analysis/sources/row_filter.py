"""The card's row ``filter:``: a small, validated expression over raw columns (never ``eval``).

A person file that holds every household member can be cut to the respondents, a survey to
its adults, a panel to one wave::

    filter: "relationship == 1"
    filter: "age >= 18 and consent in ['yes', 1]"
    filter: "not (wave == 2) or `region name` != 'Coast'"

Grammar: comparisons ``column OP value`` joined with ``and``, ``or``, ``not`` and brackets.
``OP`` is ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in`` or ``not in`` (with a list of
values). A column name that is not a plain identifier is written in backticks. Values are
numbers or quoted text. The expression is parsed with :mod:`ast` and only these node types are
accepted: no function calls, attributes, subscripts or arithmetic, so a card can never run code.

Semantics: ``==``, ``!=``, ``in`` compare codes as text (``1``, ``1.0`` and ``"1"`` are equal,
as in recodes); ``<``, ``<=``, ``>``, ``>=`` compare numbers (the card's decimal and thousands
separators apply). A comparison on a missing value is false, whatever the operator, so a row
with an unanswered filter question is excluded, and counted, rather than kept by accident.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

#: Longest filter accepted, and most comparisons in it: a filter is a line, not a program.
MAX_FILTER_LENGTH = 1000
MAX_COMPARISONS = 50

_BACKTICK = re.compile(r"`([^`]+)`")
_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.In: "in", ast.NotIn: "not in"}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class FilterError(ValueError):
    """A filter expression is not in the accepted grammar (one-line message)."""


def _parse(text: str) -> tuple[ast.Expression, dict[str, str]]:
    if not isinstance(text, str) or not text.strip():
        raise FilterError("filter is empty; write e.g. \"relationship == 1\"")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter is longer than {MAX_FILTER_LENGTH} characters")
    names: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        key = f"_col_{len(names)}_"
        names[key] = match.group(1)
        return key

    source = _BACKTICK.sub(placeholder, text.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise FilterError(
            "filter is not a valid expression; write comparisons like \"age >= 18 and sex == 'f'\" "
            "(column names with spaces in `backticks`)"
        ) from None
    return tree, names


def _constant(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
        return -node.operand.value
    raise FilterError("filter values must be numbers or quoted text")


def _column(node: ast.AST, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return names.get(node.id, node.id)
    return None


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return "function calls"
    if isinstance(node, ast.Attribute):
        return "attributes (a.b)"
    if isinstance(node, ast.Subscript):
        return "subscripts (a[b])"
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return "arithmetic"
    if isinstance(node, ast.Lambda):
        return "lambdas"
    return type(node).__name__


def _compile(node: ast.AST, names: dict[str, str], count: list[int]):
    """Check one node; return a tree of tuples: ("and"|"or", parts), ("not", part), ("cmp", col, op, value)."""
    if isinstance(node, ast.BoolOp):
        kind = "and" if isinstance(node.op, ast.And) else "or"
        return (kind, [_compile(v, names, count) for v in node.values])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ("not", _compile(node.operand, names, count))
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise FilterError("filter comparisons cannot be chained (write 'a > 1 and a < 5')")
        count[0] += 1
        if count[0] > MAX_COMPARISONS:
            raise FilterError(f"filter has more than {MAX_COMPARISONS} comparisons")
        op = _OPS.get(type(node.ops[0]))
        if op is None:
            raise FilterError("filter operators are ==, !=, <, <=, >, >=, in, not in")
        left, right = node.left, node.comparators[0]
        for side in (left, right):
            if not isinstance(side, (ast.Name, ast.Constant, ast.List, ast.Tuple)) and not (
                    isinstance(side, ast.UnaryOp) and isinstance(side.op, ast.USub)):
                raise FilterError(f"filter allows comparisons joined by and/or/not only, not {_describe(side)}")
        column = _column(left, names)
        if column is None:
            column = _column(right, names)
            if column is None or op in ("in", "not in"):
                raise FilterError("each filter comparison needs a column on its left, e.g. age >= 18")
            left, right = right, left
            op = _FLIPPED[op]
        if op in ("in", "not in"):
            if not isinstance(right, (ast.List, ast.Tuple)) or not right.elts:
                raise FilterError(f"'{op}' needs a list of values, e.g. {column} in [1, 2]")
            value = [_constant(v) for v in right.elts]
        else:
            if _column(right, names) is not None:
                raise FilterError("filter compares a column with a value, not with another column")
            value = _constant(right)
            if op in ("<", "<=", ">", ">=") and isinstance(value, str):
                raise FilterError(f"'{op}' compares numbers; {column} {op} needs a number")
        return ("cmp", column, op, value)
    if isinstance(node, ast.Name):
        raise FilterError(f"filter term {_column(node, names)!r} is not a comparison (write e.g. {node.id} == 1)")
    raise FilterError(f"filter allows comparisons joined by and/or/not only, not {_describe(node)}")


def parse_filter(text: str):
    """Parse and validate a filter; return its compiled form (see :func:`evaluate_filter`)."""
    tree, names = _parse(text)
    return _compile(tree.body, names, [0])


def filter_columns(compiled) -> list[str]:
    """Raw columns a compiled filter reads, in order of appearance."""
    kind = compiled[0]
    if kind == "cmp":
        return [compiled[1]]
    if kind == "not":
        return filter_columns(compiled[1])
    return [c for part in compiled[1] for c in filter_columns(part)]


def evaluate_filter(compiled, frame: pd.DataFrame, as_text: Callable[[pd.Series], pd.Series],
                    as_number: Callable[[pd.Series], pd.Series]) -> np.ndarray:
    """The boolean mask of rows that pass a compiled filter (missing values never pass a comparison).

    ``as_text`` turns a raw column into comparable code text (None for missing), ``as_number``
    into floats (NaN for missing or not a number); each column is converted once.
    """
    from analysis.sources.readers import code_text

    texts: dict[str, np.ndarray] = {}
    numbers: dict[str, np.ndarray] = {}

    def run(node) -> np.ndarray:
        kind = node[0]
        if kind == "and":
            return np.logical_and.reduce([run(p) for p in node[1]])
        if kind == "or":
            return np.logical_or.reduce([run(p) for p in node[1]])
        if kind == "not":
            return ~run(node[1])
        _, column, op, value = node
        if op in ("<", "<=", ">", ">="):
            if column not in numbers:
                numbers[column] = as_number(frame[column]).to_numpy(dtype="float64", na_value=np.nan)
            x = numbers[column]
            with np.errstate(invalid="ignore"):
                result = {"<": x < value, "<=": x <= value, ">": x > value, ">=": x >= value}[op]
            return result & ~np.isnan(x)
        if column not in texts:
            texts[column] = as_text(frame[column]).to_numpy(dtype=object)
        x = texts[column]
        present = pd.notna(x)
        wanted = [code_text(v) for v in (value if isinstance(value, list) else [value])]
        hit = pd.Series(x).isin(wanted).to_numpy()
        if op in ("==", "in"):
            return hit & present
        return ~hit & present

    return np.asarray(run(compiled), dtype=bool)
