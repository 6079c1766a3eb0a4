"""Start-up: how long a fresh interpreter takes to ``pass``, ``import fastpush``, print
``python -m fastpush --help`` and ``store --help``, to load the send path
(``from fastpush import Push``), and to run ``store`` up to its first file (an empty folder: the
parser, the send path, the scan; issue 17's targets: 40 and 60 ms).

    python benches/startup.py [--runs 10] [TREE ...]

Each TREE is a source tree whose ``python/`` goes first on ``PYTHONPATH`` (default: the
installed fastpush); with several, the runs alternate between them, so that a busy machine
weighs on each alike. Two environments: as installed (``site``, every ``.pth`` file of
site-packages processed), and ``-S`` with site-packages on ``PYTHONPATH`` (no ``.pth`` file: what
an interpreter without a ``.pth`` that imports at start-up costs). Prints the medians of the
wall time and of the child's CPU time (user + system, from ``wait4``) as a markdown table.
Byte-code is compiled first (the runs themselves write none when PYTHONDONTWRITEBYTECODE is set,
and an install has it).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# command -> (interpreter arguments, the exit status it ends with)
CASES = {
    "python -c pass": (["-c", "pass"], 0),
    "import fastpush": (["-c", "import fastpush"], 0),
    "python -m fastpush --help": (["-m", "fastpush", "--help"], 0),
    "python -m fastpush store --help": (["-m", "fastpush", "store", "--help"], 0),
    # What every push loads before its first byte, CLI or not.
    "from fastpush import Push": (["-c", "from fastpush import Push"], 0),
    # EMPTY, an empty folder: no file to send, exit 1 before connecting (9 is never dialled).
    "python -m fastpush store 127.0.0.1 9 EMPTY": (
        ["-m", "fastpush", "store", "127.0.0.1", "9", "EMPTY"],
        1,
    ),
}
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


def _installed_root() -> str:
    """Where the installed fastpush is imported from: site-packages, or the source tree of an
    editable install, whose ``.pth`` file ``-S`` does not read."""
    spec = importlib.util.find_spec("fastpush")
    if spec is None or spec.origin is None:
        sys.exit("fastpush is not installed: pass a TREE")
    return str(Path(spec.origin).parent.parent)


def _once(flags: list[str], env: dict[str, str], expected: int) -> tuple[float, float]:
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != expected:
        sys.exit(f"{' '.join(flags)}: exit status {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("trees", nargs="*", type=Path)
    args = parser.parse_args(argv)
    trees: list[Path | None] = list(args.trees) or [None]
    for tree in args.trees:
        compileall.compile_dir(tree / "python", quiet=1)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    empty = tempfile.mkdtemp(prefix="fastpush-startup-")
    times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for mode, site_flags in (("site", []), ("-S", ["-S"])):
            for tree in trees:
                path = [] if tree is None else [str(tree / "python")]
                if site_flags:
                    path += [_installed_root()] if tree is None else []
                    path.append(SITE_PACKAGES)
                env = {**base, "PYTHONPATH": os.pathsep.join(path)} if path else base
                for case, (flags, expected) in CASES.items():
                    key = (mode, str(tree or "installed"), case)
                    argv = [*site_flags, *(empty if a == "EMPTY" else a for a in flags)]
                    times.setdefault(key, []).append(_once(argv, env, expected))
    os.rmdir(empty)
    print(f"medians of {args.runs}, load average {os.getloadavg()[0]:.2f} at the end\n")
    print("| environment | tree | command | wall ms | CPU ms |")
    print("|---|---|---|---:|---:|")
    for (mode, tree, case), samples in times.items():
        wall = statistics.median(w for w, _ in samples) * 1e3
        cpu = statistics.median(c for _, c in samples) * 1e3
        print(f"| {mode} | {tree} | `{case}` | {wall:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
