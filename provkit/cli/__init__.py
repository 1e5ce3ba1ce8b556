"""The command line: ``provkit`` and its subcommands (``main``), the analysis commands (``commands``).

The top layer: it may use every other layer, and ``provkit.cli.main`` alone starts the simulator's own commands
(``emulator``, ``demo``).
"""
