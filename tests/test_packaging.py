"""The project's packaging agrees with itself: pyproject vs environment.yml, the console script, CI and make.

A conda user and a pip user must end up with the same packages; CI must run `make test` from the repository
root; `make test` must pick a Python 3.11+ for .venv and reinstall only when pyproject.toml changes.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# PyPI name -> conda-forge name, where they differ (names are compared after normalisation).
CONDA_NAMES = {
    "kaleido": "python-kaleido",
    "msgpack": "msgpack-python",
    "tables": "pytables",
}
# Entries of environment.yml that set up the environment rather than mirror a pyproject dependency.
CONDA_TOOLING = {"python", "pip"}


# --- tiny readers -------------------------------------------------------------------------------------------


def parse_environment_yml(text: str) -> dict[str, object]:
    """Read the subset of YAML that environment.yml uses.

    Returns top-level ``key: value`` pairs as strings and ``key:`` blocks of ``- item`` lines as lists; a
    ``- pip:`` item becomes ``{"pip": [...]}``. Assumes two-space indentation. Any other construct raises
    ValueError naming the line, so the file cannot silently outgrow this reader.
    """
    doc: dict[str, object] = {}
    current: list[object] | None = None
    pip_list: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if indent == 0:
            match = re.fullmatch(r"([A-Za-z_][\w-]*):\s*(.*)", body)
            if not match:
                raise ValueError(f"environment.yml line {number}: expected 'key: value', got {raw!r}")
            key, value = match.groups()
            pip_list = None
            if value[:1] in ("{", "[", "|", ">", "&", "*", "!"):
                raise ValueError(f"environment.yml line {number}: unsupported YAML for this reader: {raw!r}")
            if value:
                doc[key] = value.strip("'\"")
                current = None
            else:
                current = []
                doc[key] = current
        elif indent == 2 and body.startswith("- ") and current is not None:
            item = body[2:].strip().strip("'\"")
            pip_list = None
            if item == "pip:":
                pip_list = []
                current.append({"pip": pip_list})
            else:
                current.append(item)
        elif indent == 4 and body.startswith("- ") and pip_list is not None:
            pip_list.append(body[2:].strip().strip("'\""))
        else:
            raise ValueError(f"environment.yml line {number}: unsupported YAML for this reader: {raw!r}")
    return doc


def normalise_name(name: str) -> str:
    """Return the comparable form of a package name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str) -> tuple[object, ...]:
    """Return a comparable key for a dotted version: ``14`` and ``14.0`` compare equal."""
    parts: list[object] = [int(p) if p.isdigit() else p for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def parse_requirement(spec: str) -> tuple[str, str | None]:
    """Split a pip requirement or conda match spec into (normalised name, minimum version or None).

    The minimum comes from ``>=``, ``==``, ``~=`` or conda's single ``=``; extras and markers are ignored.
    """
    spec = spec.split(";", 1)[0].strip()
    match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)", spec)
    if not match:
        raise ValueError(f"cannot read requirement {spec!r}")
    name, _extras, constraints = match.groups()
    minimum = None
    for constraint in filter(None, (c.strip() for c in constraints.split(","))):
        op_match = re.fullmatch(r"(>=|==|~=|=)\s*([\w.*]+)", constraint)
        if op_match:
            minimum = op_match.group(2).rstrip(".*")
    return normalise_name(name), minimum


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pyproject_requirements() -> dict[str, str | None]:
    """Return runtime, test-extra and bench-extra requirements of pyproject.toml as {conda-side name: minimum}."""
    project = pyproject()["project"]
    extras = project.get("optional-dependencies", {})
    specs = (
        list(project.get("dependencies", [])) + list(extras.get("test", [])) + list(extras.get("bench", []))
    )
    result: dict[str, str | None] = {}
    for spec in specs:
        name, minimum = parse_requirement(spec)
        result[CONDA_NAMES.get(name, name)] = minimum
    return result


def environment() -> dict[str, object]:
    return parse_environment_yml((ROOT / "environment.yml").read_text(encoding="utf-8"))


def environment_requirements() -> dict[str, str | None]:
    """Return environment.yml packages (conda and pip lists) as {name: minimum}, without python and pip."""
    result: dict[str, str | None] = {}
    for item in environment().get("dependencies", []):
        specs = item["pip"] if isinstance(item, dict) else [item]
        for spec in specs:
            name, minimum = parse_requirement(spec)
            if name not in CONDA_TOOLING:
                result[CONDA_NAMES.get(name, name)] = minimum
    return result


# --- pyproject and environment.yml agree ---------------------------------------------------------------------


def test_every_pyproject_dependency_is_in_environment_yml_with_the_same_minimum() -> None:
    wanted, conda = pyproject_requirements(), environment_requirements()
    missing = sorted(set(wanted) - set(conda))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    differing = {
        name: (wanted[name], conda[name])
        for name in wanted
        if version_key(wanted[name] or "0") != version_key(conda[name] or "0")
    }
    assert not differing, f"minimum versions differ (pyproject, environment.yml): {differing}"


def test_every_environment_yml_package_is_in_pyproject() -> None:
    extra = sorted(set(environment_requirements()) - set(pyproject_requirements()))
    assert not extra, (
        f"in environment.yml but not in pyproject dependencies or the test and bench extras: {extra}"
    )


def test_environment_yml_names_the_env_channel_and_python_of_pyproject() -> None:
    env = environment()
    assert env["name"] == "provkit"
    assert env["channels"] == ["conda-forge"]
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and parse_requirement(d)[0] == "python"]
    assert len(pythons) == 1, "environment.yml must pin python exactly once"
    conda_python = parse_requirement(pythons[0])[1]
    requires = pyproject()["project"]["requires-python"]
    assert conda_python is not None and requires.startswith(">=")
    assert version_key(conda_python) >= version_key(requires[2:].strip())


def test_environment_reader_understands_pip_lists_and_rejects_what_it_cannot_read() -> None:
    text = "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11  # note\n  - pip\n  - pip:\n    - foo-bar>=1.2\n"
    assert parse_environment_yml(text) == {
        "name": "x",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11", "pip", {"pip": ["foo-bar>=1.2"]}],
    }
    with pytest.raises(ValueError, match="line 2"):
        parse_environment_yml("name: x\nvariables: {A: 1}\n  nested: true\n")


def test_requirement_reader_normalises_names_and_minimums() -> None:
    assert parse_requirement("PyJWT[crypto]>=2.8,<3 ; python_version>='3.11'") == ("pyjwt", "2.8")
    assert parse_requirement("typing_extensions = 4.*") == ("typing-extensions", "4")
    assert parse_requirement("tqdm") == ("tqdm", None)
    assert version_key("14") == version_key("14.0.0") != version_key("14.1")


# --- the console script ----------------------------------------------------------------------------------------


def test_console_script_provkit_is_declared_and_its_function_exists() -> None:
    target = pyproject()["project"]["scripts"]["provkit"]
    module, _, function = target.partition(":")
    assert module.split(".")[0] == "provkit" and function, f"unexpected entry point {target!r}"
    source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert source.is_file(), (
        f"the provkit command points at {target}, but {source.relative_to(ROOT)} is missing"
    )
    tree = ast.parse(source.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert function in defined, f"{source.relative_to(ROOT)} does not define {function}()"


# --- CI entry point ------------------------------------------------------------------------------------------


def _fake_make(bin_dir: Path, log: Path, exit_code: int = 0) -> None:
    """Put a `make` on bin_dir that records its working directory and arguments, then exits with exit_code."""
    bin_dir.mkdir(exist_ok=True)
    make = bin_dir / "make"
    make.write_text(f'#!/bin/sh\necho "$PWD|$*" >> "{log}"\nexit {exit_code}\n', encoding="utf-8")
    make.chmod(0o755)


def test_ci_run_is_executable_on_disk_and_in_git() -> None:
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    staged = subprocess.run(
        [git, "ls-files", "-s", ".ci/run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    if not staged:
        pytest.skip(".ci/run is not committed yet")
    assert staged.startswith("100755 "), f"git records .ci/run as {staged.split()[0]}, not executable"


def test_ci_run_runs_make_test_from_the_repository_root(tmp_path: Path) -> None:
    log = tmp_path / "make.log"
    _fake_make(tmp_path / "bin", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "CI": "true"}
    subprocess.run(
        [str(ROOT / ".ci" / "run")], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, check=True, timeout=30
    )
    assert log.read_text(encoding="utf-8").splitlines() == [f"{ROOT}|test"]


def test_ci_run_fails_when_make_test_fails(tmp_path: Path) -> None:
    _fake_make(tmp_path / "bin", tmp_path / "make.log", exit_code=3)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "CI": "true"}
    done = subprocess.run([str(ROOT / ".ci" / "run")], env=env, stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 3


# --- make: choosing the interpreter and reinstalling -------------------------------------------------------

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _project_copy(tmp_path: Path) -> Path:
    """Return a directory holding copies of the Makefile and pyproject.toml, to run make in isolation."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)
    return project


def _bin_with_tools(tmp_path: Path) -> Path:
    """Return a bin directory with only the tools the Makefile's recipes use (and no Python)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("rm", "mkdir", "touch"):
        found = shutil.which(tool)
        assert found, f"{tool} not found"
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def _fake_python(bin_dir: Path, name: str, log: Path, version: str | None) -> None:
    """Put a stand-in Python named `name` on bin_dir.

    With a version, `--version` prints it, any `-c` check succeeds only for 3.11+, and `-m venv DIR` is
    recorded in log and creates DIR/bin/python. Without a version it acts like a pyenv shim for a Python that
    is not installed: every call fails.
    """
    path = bin_dir / name
    if version is None:
        path.write_text("#!/bin/sh\necho 'pyenv: version not installed' >&2\nexit 127\n", encoding="utf-8")
    else:
        ok = 0 if tuple(int(p) for p in version.split(".")[:2]) >= (3, 11) else 1
        path.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "--version" ]; then echo "Python {version}"; exit 0; fi\n'
            f'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then echo "{name} $*" >> "{log}"; '
            'mkdir -p "$3/bin" && touch "$3/bin/python"; exit 0; fi\n'
            f'if [ "$1" = "-c" ]; then exit {ok}; fi\n'
            "exit 2\n",
            encoding="utf-8",
        )
    path.chmod(0o755)


def _make(project: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": str(project), "LC_ALL": "C"}
    return subprocess.run(
        [str(MAKE), "--no-print-directory", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


@needs_make
@pytest.mark.parametrize(
    ("pythons", "chosen"),
    [
        ({"python3.11": "3.11.9", "python3": "3.12.1"}, "python3.11"),
        ({"python3": "3.12.1"}, "python3"),
        ({"python3.11": None, "python3": "3.11.4"}, "python3"),
    ],
    ids=["prefers-python3.11", "falls-back-to-python3", "skips-a-broken-shim"],
)
def test_make_creates_the_venv_with_a_python_3_11_or_newer(
    tmp_path: Path, pythons: dict[str, str | None], chosen: str
) -> None:
    project, bin_dir, log = _project_copy(tmp_path), _bin_with_tools(tmp_path), tmp_path / "venv.log"
    for name, version in pythons.items():
        _fake_python(bin_dir, name, log, version)
    done = _make(project, bin_dir, ".venv/bin/python")
    assert done.returncode == 0, done.stderr
    assert log.read_text(encoding="utf-8").splitlines() == [f"{chosen} -m venv .venv"]


@needs_make
def test_make_refuses_an_old_python_and_says_what_it_found(tmp_path: Path) -> None:
    project, bin_dir, log = _project_copy(tmp_path), _bin_with_tools(tmp_path), tmp_path / "venv.log"
    _fake_python(bin_dir, "python3", log, "3.9.18")
    done = _make(project, bin_dir, "test")
    assert done.returncode != 0
    assert "needs Python 3.11 or newer" in done.stderr
    assert "python3 is Python 3.9.18" in done.stderr
    assert "python3.11 is not on PATH" in done.stderr
    assert not log.exists() and not (project / ".venv").exists()


@needs_make
def test_make_test_reinstalls_only_after_pyproject_changes(tmp_path: Path) -> None:
    project, bin_dir = _project_copy(tmp_path), _bin_with_tools(tmp_path)
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "python").touch()
    stamp = project / ".venv" / ".provkit-installed"
    stamp.touch()
    pyproject_file = project / "pyproject.toml"
    os.utime(pyproject_file, (stamp.stat().st_mtime - 60,) * 2)

    unchanged = _make(project, bin_dir, "-n", "test")
    assert unchanged.returncode == 0, unchanged.stderr
    assert "pip install" not in unchanged.stdout
    lines = unchanged.stdout.splitlines()[-5:]
    # The format check, the linter, the layer contracts, the type checker, then the suite.
    assert lines == [
        ".venv/bin/ruff format --check .",
        ".venv/bin/ruff check .",
        ".venv/bin/lint-imports",
        ".venv/bin/mypy",
        ".venv/bin/python -m pytest",
    ]
    # Before them, `make browser` looks for Chromium (and installs it with apt as root when it is missing).
    assert "command -v chromium" in unchanged.stdout

    os.utime(pyproject_file, (stamp.stat().st_mtime + 60,) * 2)
    changed = _make(project, bin_dir, "-n", "test")
    assert changed.returncode == 0, changed.stderr
    install = [i for i, line in enumerate(changed.stdout.splitlines()) if "-m pip install" in line]
    assert install and "-e '.[test]'" in changed.stdout.splitlines()[install[0]]
    assert changed.stdout.splitlines()[-5:] == lines
