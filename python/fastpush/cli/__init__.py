"""The command line: ``python -m fastpush store|echo|demo|serve|route`` (``main``), shared
options (``options``), the store command's progress and report (``progress``), the Dask options
(``cluster``), ``serve`` and ``route``.

The only layer that uses argparse and rich, and the only one that prints.
"""

from .main import main

__all__ = ["main"]
