"""The command line: ``python -m fastpush store|echo|demo|serve|route``.

``main`` (the parser and dispatch), ``options`` (argument types, option groups and exit codes
shared by the commands), ``store`` (store, echo, demo), ``cluster`` (store's Dask options),
``serve``, ``route``, ``live`` (what a running command shows, Ctrl-C) and ``report`` (writing
and reading the JSONL report; ``fastpush.stored_paths`` loads it, so it imports neither
argparse nor rich).

The only layer that uses argparse and rich, and the only one that prints. May import every
layer below. Importing this package imports no command: ``fastpush.cli.main:main`` is the
entry point.
"""
