"""The typed surface: every native name has a stub and a docstring, and the
stubs' signatures name the same parameters as the native functions."""

from __future__ import annotations

import ast
import inspect
import pathlib

import mithridate as m
from mithridate import _native

STUB = pathlib.Path(m.__file__).with_name("_native.pyi")


def _stub_defs() -> dict[str, ast.AST]:
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_stub_and_typed_marker_ship_with_the_wheel():
    assert STUB.is_file()
    assert STUB.with_name("py.typed").is_file()


def test_every_native_name_has_a_stub_and_a_docstring():
    defs = _stub_defs()
    public = [n for n in dir(_native) if not n.startswith("_")]
    assert len(public) > 20
    for name in public:
        assert name in defs, f"{name} has no stub"
        assert (getattr(_native, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_stub_signatures_match_the_native_functions():
    defs = _stub_defs()
    checked = 0
    for name, node in defs.items():
        obj = getattr(_native, name)
        if isinstance(node, ast.FunctionDef):
            sig = inspect.signature(obj)
            a = node.args
            stub_params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            assert stub_params == list(sig.parameters), name
            checked += 1
    assert checked >= 12


def test_package_exports_resolve():
    for name in m.__all__:
        assert hasattr(m, name), name
