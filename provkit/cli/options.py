"""Options more than one command takes, defined once: ``--workspace``."""

from __future__ import annotations

import argparse

__all__ = ["add_workspace"]

_WHAT = "read the logs from this Log Analytics workspace with KQL"
_DEFAULT = "default ID: $PROVKIT_WORKSPACE_ID; with --demo, the simulated tenant's workspace"


def _one_workspace(value: str) -> str:
    if "=" in value:
        raise argparse.ArgumentTypeError(
            f"{value!r}: ID=TENANT is for `provkit report` (a fleet); here give the workspace ID alone "
            "(the tenant is PROVKIT_TENANT_ID)"
        )
    return value.strip()


def add_workspace(parser: argparse.ArgumentParser, what: str = "", *, fleet: bool = False) -> None:
    """``--workspace [ID]``: the Log Analytics workspace the logs are read from (no value: the default one).

    With ``fleet`` (``provkit report``) the option repeats and takes ``ID=TENANT``; the values arrive as a list.
    """
    if not fleet:
        parser.add_argument(
            "--workspace",
            nargs="?",
            const="",
            type=_one_workspace,
            metavar="ID",
            help=f"{_WHAT}{', ' + what if what else ''} ({_DEFAULT})",
        )
        return
    parser.add_argument(
        "--workspace",
        action="append",
        nargs="?",
        const="",
        metavar="ID[=TENANT]",
        help=f"{_WHAT}{', ' + what if what else ''} ({_DEFAULT}). Repeat it for a fleet: one index row per "
        "tenant and app across the workspaces. Each workspace's tenant is read from its rows (the AADTenantId "
        "column; the query signs in to PROVKIT_TENANT_ID, the home tenant) unless given as ID=TENANT (a tenant "
        "id or domain); each tenant is then signed in to with the same PROVKIT_CLIENT_ID (a multi-tenant app "
        "consented in every tenant). A tenant that fails gets a row with its error; the others still run",
    )
