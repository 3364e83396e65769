"""One normal form of a Python method signature, for the real SDK's source and our fakes alike: the
parameters' names, kinds and default expressions, annotations dropped (the fakes need not import ROS types
for annotations, but must take the same arguments under the same names and defaults)."""

from __future__ import annotations

import ast
import inspect
import textwrap


def signature_from_ast(func: ast.FunctionDef) -> list[str]:
    """`["self", "x_m", "v_m=None", "*args", "blocking=True", "**kwargs"]` for a parsed `def`."""
    a = func.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    out = [p.arg if d is None else f"{p.arg}={ast.unparse(d)}" for p, d in zip(positional, defaults, strict=True)]
    if a.vararg:
        out.append(f"*{a.vararg.arg}")
    elif a.kwonlyargs:
        out.append("*")
    for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append(p.arg if d is None else f"{p.arg}={ast.unparse(d)}")
    if a.kwarg:
        out.append(f"**{a.kwarg.arg}")
    return out


def signature_of(method) -> list[str]:
    """The same normal form for a live function (a fake's method), read from its source."""
    source = textwrap.dedent(inspect.getsource(method))
    func = ast.parse(source).body[0]
    assert isinstance(func, ast.FunctionDef), f"{method} is not a plain def"
    return signature_from_ast(func)
