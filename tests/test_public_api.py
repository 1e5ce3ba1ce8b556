"""The package's public surface: everything exported is listed in __all__, and every error descends from one root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import provkit
from provkit import errors


def test_all_lists_exactly_the_public_names():
    # The names are loaded on first use (provkit.__getattr__): dir() lists them before they are.
    public = {
        name
        for name in dir(provkit)
        if not name.startswith("_") and not inspect.ismodule(getattr(provkit, name))
    }
    assert public == set(provkit.__all__) - {"__version__"}
    for name in provkit.__all__:
        assert getattr(provkit, name) is not None, name


def test_importing_the_package_does_not_import_the_analysis_or_pandas():
    """``import provkit`` (and so every ``provkit`` command) starts without pandas, plotly or the checks."""
    import subprocess
    import sys

    code = "import sys, provkit; print(sorted(m for m in ('pandas', 'plotly', 'provkit.analysis') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_error_has_one_root_and_is_exported():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    for cls in classes:
        assert issubclass(cls, errors.ProvkitError), cls
        assert cls.__name__ in provkit.__all__, f"{cls.__name__} is not exported"
    assert issubclass(errors.NotFoundError, LookupError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.PermissionDeniedError, PermissionError)
    assert issubclass(errors.StoreError, errors.ProvkitError)


def _product_modules() -> list[str]:
    """Every module of the product: the simulator stands apart (its errors answer HTTP requests)."""
    names = [
        info.name
        for info in pkgutil.walk_packages(provkit.__path__, "provkit.")
        if not info.name.startswith("provkit.sim")
        and not info.name.endswith("__main__")  # that one runs the CLI
    ]
    assert "provkit.data.store" in names and "provkit.cli.main" in names  # the walk found the layers
    return names


def test_every_public_error_defined_anywhere_in_the_product_descends_from_the_root():
    """An error class outside provkit.errors (a source's own errors, say) still sits in the one tree, so
    ``except ProvkitError`` catches everything provkit raises on purpose; private helpers (``_Retry``) that
    never leave their module are exempt."""
    found = []
    for name in _product_modules():
        module = importlib.import_module(name)
        for attribute, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or attribute.startswith("_") or not issubclass(cls, BaseException):
                continue
            found.append(cls)
            assert issubclass(cls, errors.ProvkitError), (
                f"{name}.{attribute} is outside the ProvkitError tree"
            )
    assert found, "no error classes outside provkit.errors: the walk is broken"


def test_errors_that_moved_into_the_tree_stay_importable_where_they_were():
    from provkit.data.store import StoreError

    assert StoreError is errors.StoreError and StoreError is provkit.StoreError


def test_errors_print_their_remedy_and_link():
    exc = errors.ConfigError(
        "The window is empty.", remedy="Use --since 7d.", link="https://example.invalid/x"
    )
    text = str(exc)
    assert "The window is empty." in text and "What to do: Use --since 7d." in text and "See: " in text
