"""One notebook of a report: run with papermill in a kernel kept warm, then exported as an HTML page.

Starting a kernel and importing pandas, plotly and provkit costs seconds, the analysis of a stored app well
under one: so each process keeps one kernel (:func:`register_warm_engine`, papermill's nbclient engine pointed at
it) and resets its namespace before each notebook. :func:`execute_notebook` never raises: a failed cell becomes
a short error naming the cell.

papermill, nbclient, jupyter_client and ipykernel are imported inside the functions that use them, on purpose:
together they take seconds to import, and every ``provkit`` command imports the report module to offer its
options, while only ``provkit report`` running notebooks needs them.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing.util
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from provkit.workbook.pages import export_html

__all__ = ["CELL_TIMEOUT", "WARM_ENGINE", "execute_notebook", "register_warm_engine", "stop_warm_kernel"]

CELL_TIMEOUT = 600  # seconds a single cell may run before the notebook counts as failed
_SECRET_VARIABLES = ("PROVKIT_CLIENT_SECRET",)
_HELD: dict[
    str, str
] = {}  # the secret variables taken out of this process's environment, for _kernel_environment


def _kernel_manager_class() -> type:
    """A kernel manager that starts ipykernel with this very Python, whatever kernelspecs are installed."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
            )

    class ThisPythonKernel(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs(parent=self)

    return ThisPythonKernel


# One kernel per process, reused from notebook to notebook: starting a kernel and importing pandas, plotly and
# provkit costs seconds, the analysis of a stored app well under one. Before each notebook the kernel's
# namespace is reset (a new session: variables and execution counts start over; imported modules stay).
_WARM: dict[str, Any] = {}
WARM_ENGINE = "provkit-warm-kernel"


def _warm_kernel(cwd: str) -> Any:
    """This process's kernel, started on first use and reset (fresh namespace, working folder ``cwd``)."""
    from jupyter_core.utils import run_sync

    km = _WARM.get("km")
    if km is not None and not run_sync(km.is_alive)():
        _WARM.clear()
        km = None
    if km is None:
        km = _kernel_manager_class()(kernel_name="python3")
        # The kernel's own stderr carries only start-up chatter; errors in cells reach us through the protocol.
        run_sync(km.start_kernel)(cwd=cwd, stderr=subprocess.DEVNULL)
        _WARM["km"] = km
        # Worker processes end without atexit handlers; multiprocessing finalizers still run.
        multiprocessing.util.Finalize(None, stop_warm_kernel, exitpriority=10)
        return km
    client = km.client()
    client.start_channels()
    try:
        run_sync(client.wait_for_ready)(timeout=60)
        code = f"import os; os.chdir({cwd!r}); get_ipython().reset(new_session=True, aggressive=False)"
        reply = run_sync(client.execute_interactive)(code, timeout=60, output_hook=lambda _msg: None)
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"resetting the kernel failed: {reply['content'].get('evalue')}")
    finally:
        client.stop_channels()
    return km


def stop_warm_kernel() -> None:
    """Shut this process's warm kernel down (if one was started)."""
    km = _WARM.pop("km", None)
    if km is not None:
        from jupyter_core.utils import run_sync

        run_sync(km.shutdown_kernel)(now=True)


@functools.cache
def register_warm_engine() -> str:
    """Register the warm kernel's engine with papermill (its public ``papermill_engines.register``), once per
    process; returns the engine's name for ``papermill.execute_notebook(engine_name=...)``."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class WarmKernelEngine(NBClientEngine):
        """papermill's nbclient engine, run in this process's warm kernel instead of a new one."""

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            **kwargs: Any,
        ) -> Any:
            client = PapermillNotebookClient(
                nb_man,
                km=_warm_kernel(os.getcwd()),  # papermill has moved into the task's cwd
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            try:
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    papermill_engines.register(WARM_ENGINE, WarmKernelEngine)
    return WARM_ENGINE


def execute_notebook(task: dict[str, Any]) -> dict[str, Any]:
    """Run one notebook with papermill and export its HTML page; never raises.

    ``task``: input, output (paths), parameters (dict), hide_input (bool), title (str), banner (str: where the
    evidence came from, shown at the top of the page). Returns the task's
    name, app, status ("ok" or "failed"), seconds, the written files (relative names) and, on failure, a
    short error naming the cell.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _kernel_environment(task.get("parameters") or {})
    source, output = Path(task["input"]), Path(task["output"])
    began = time.monotonic()
    result: dict[str, Any] = {
        "name": source.stem,
        "app": task.get("app"),
        "status": "ok",
        "ipynb": output.name,
        "html": None,
        "error": None,
    }
    warm = task.get("warm", True)
    engine: dict[str, Any] = {"kernel_manager_class": _kernel_manager_class()}
    if warm:
        engine = {"engine_name": register_warm_engine()}
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=task["parameters"],
            kernel_name="python3",
            language="python",
            progress_bar=False,
            cwd=str(output.parent),
            execution_timeout=CELL_TIMEOUT,
            **engine,
        )
    except PapermillExecutionError as exc:
        result["status"] = "failed"
        line = next(
            (t.strip() for t in str(exc.source).splitlines() if t.strip() and not t.startswith("#")), ""
        )
        result["error"] = f"cell In [{exc.exec_count}] `{line[:80]}`: {exc.ename}: {_first_lines(exc.evalue)}"
    except Exception as exc:  # a kernel that died or never started; the report goes on with the others
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {_first_lines(str(exc))}"
    if output.exists():
        try:
            html_path = export_html(
                output,
                output.with_suffix(".html"),
                hide_input=task.get("hide_input", True),
                title=task.get("title"),
                siblings=task.get("siblings"),
                banner=task.get("banner"),
            )
            result["html"] = html_path.name
        except Exception as exc:
            result["error"] = (result["error"] or "") + f" (HTML export failed: {type(exc).__name__}: {exc})"
    result["seconds"] = round(time.monotonic() - began, 2)
    return result


def _kernel_environment(parameters: dict[str, Any]) -> None:
    """Leave the secret out of the environment the kernel starts with, unless the notebook signs in itself.

    A notebook that reads the store offline needs no secret. One that queries a live tenant's Log Analytics
    workspace (parameters ``workspace`` and ``source="graph"``) signs in from the kernel, as a notebook opened
    in Jupyter does: its kernel keeps the variable, which stays in its environment (never in a parameter, an
    output or a page). A simulated tenant's workspace needs none (the demo brings its own sign-in).
    """
    for name in _SECRET_VARIABLES:
        value = os.environ.pop(name, None)
        if value is not None:
            _HELD[name] = value
    if parameters.get("workspace") and parameters.get("source") == "graph":
        os.environ.update(_HELD)


def _first_lines(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines()[:lines] if line.strip())
