"""The ``provkit`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from provkit import __version__
from provkit.errors import ProvkitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provkit",
        description="Investigate Microsoft Entra ID application provisioning: logs, cycles, findings, reports.",
    )
    parser.add_argument("--version", action="version", version=f"provkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from provkit.sim import cli as sim_cli

    emulator = sub.add_parser(
        "emulator",
        help="serve the simulated tenant (a local Graph-compatible server) on 127.0.0.1",
        description="Serve a simulated Entra tenant over HTTPS on 127.0.0.1: Graph v1.0 (provisioning logs, "
        "jobs, schema, directory) and the identity platform that msal signs in to.",
    )
    sim_cli.add_arguments(emulator)
    emulator.set_defaults(func=sim_cli.run)

    from provkit import demo

    demo_parser = sub.add_parser("demo", help="start the simulated tenant and show what it serves")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ProvkitError as exc:
        print(f"provkit: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        print("provkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
