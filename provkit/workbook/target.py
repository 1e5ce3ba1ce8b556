"""Which tenant a notebook or a report reads: :class:`Target`, the parameters cell's connection values.

A notebook's parameters cell names ``source``, ``store``, ``cloud``, ``tenant_id`` and ``client_id`` (papermill
sets them as plain values), and in the notebooks that can read one, ``workspace`` (a Log Analytics workspace id:
the logs come from it through KQL, the configuration still from Graph); the notebook turns them into one ``Target`` (``nb.target(...)``) and passes it to
every helper that loads, lists apps or calls the tenant. Nothing here holds a secret: sign-in settings other
than the tenant id, client id and cloud come from the ``PROVKIT_*`` environment variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provkit.data.auth import Settings
from provkit.data.graph import GraphClient
from provkit.data.sources.graph import connect
from provkit.errors import ConfigError
from provkit.workbook.session import check_source, demo_options_from_env, demo_tenant

__all__ = ["Target"]


def _value(value: object) -> str | None:
    """A parameter as text, or None when empty (papermill and notebooks pass "" or None for "not set")."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class Target:
    """Where evidence comes from and which tenant a call goes to.

    ``source``: "graph", "demo", "store" or None (the live tenant when ``PROVKIT_TENANT_ID`` is set, else the
    simulated one); ``store``: the store folder (None: ``$PROVKIT_STORE`` or the user data folder); ``cloud``,
    ``tenant_id``, ``client_id``: sign-in settings that take precedence over ``PROVKIT_*``. Empty values mean
    "not set". ``workspace``: the Log Analytics workspace id the logs are read from (None: the Graph reporting
    API, or the store).
    """

    source: str | None = None
    store: str | None = None
    cloud: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    workspace: str | None = None

    def __post_init__(self) -> None:
        for name in ("source", "store", "cloud", "tenant_id", "client_id", "workspace"):
            value = getattr(self, name)
            object.__setattr__(self, name, _value(str(value) if isinstance(value, Path) else value))

    @property
    def chosen_source(self) -> str:
        """The source that is read: ``source`` checked, or the default when none is named."""
        return check_source(self.source)

    def graph_client(self, *, allow_writes: bool = False) -> GraphClient:
        """A Graph client from ``PROVKIT_*``, with this target's non-secret settings taking precedence."""
        env = dict(os.environ)
        for name, value in (
            ("PROVKIT_CLOUD", self.cloud),
            ("PROVKIT_TENANT_ID", self.tenant_id),
            ("PROVKIT_CLIENT_ID", self.client_id),
        ):
            if value:
                env[name] = value
        return connect(Settings.from_env(env), allow_writes=allow_writes)

    def demo(self, *, allow_writes: bool = False) -> Any:
        """The simulated tenant (its clock and seed from ``PROVKIT_DEMO_*``); with ``allow_writes``, signed in
        as the registration that may write."""
        options = demo_options_from_env()
        if allow_writes:
            options.update(admin=True, allow_writes=True)
        return demo_tenant(**options)

    def read_client(self) -> GraphClient:
        """A read-only client of the tenant this target names (the simulated one for ``source="demo"``)."""
        return self.demo().client if self.chosen_source == "demo" else self.graph_client()

    def change_client(self, *, allow_writes: bool) -> GraphClient:
        """A client for a call that reaches beyond reading (provkit.data.changes); ``allow_writes`` for the calls
        that change the tenant. A :class:`ConfigError` when the target is the store: there is no tenant to call."""
        source = self.chosen_source
        if source == "store":
            raise ConfigError(
                "This notebook reads the store offline: there is no tenant to call.",
                remedy="Set source = 'graph' (or 'demo') in the parameters cell to call the tenant.",
            )
        if source == "demo":
            return self.demo(allow_writes=True).client
        return self.graph_client(allow_writes=allow_writes)

    @property
    def signs_in_differently(self) -> bool:
        """Whether a sign-in setting differs from ``PROVKIT_*`` (then notebooks build their own client)."""
        return bool(self.cloud or self.tenant_id or self.client_id)
