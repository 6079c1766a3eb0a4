"""PNG charts of the benchmark results, written next to their markdown in benches/results/.

    python benches/charts.py [--e2e FILE.json ...] [--receive FILE.json|FILE.md ...]
                             [--route FILE.json|FILE.md ...] [--out DIR]

One generic chart (:func:`bars`: groups of bars, one bar per series, a panel per metric) and,
per suite, which rows go in it: e2e (senders per sink: files/s or MB/s, and sender CPU s/GB),
receive (receivers per sender: MB/s, receiver CPU s/GB), route (routers per sink: files/s or
MB/s, router CPU s/GB). Each PNG is named after its source and dataset (``e2e.json`` ->
``e2e-study.png``, ``e2e-headline.png``). Rows come from a suite's JSON (its
``--json``/``--out`` file) or, where only markdown was recorded, from every table in it (a
later row for the same cell wins). matplotlib (the ``bench`` extra) is imported here only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GB = 1e9

Row = Mapping[str, Any]
# A panel: its axis label and the value of a row (None: not measured, or failed).
Panel = tuple[str, Callable[[Row], float | None]]

# Ours first, in one colour family; the others in greys and muted colours, the same everywhere.
_COLOURS = {
    "fastpush": "#1f77b4",
    "fastpush-rust": "#1f77b4",
    "fastpush-python": "#6baed6",
    "fastpush-route": "#1f77b4",
    "storescu": "#7f7f7f",
    "dicom-storescu": "#d62728",
    "pynetdicom": "#ff7f0e",
}
_OTHERS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79"]


def bars(
    path: Path, title: str, rows: Sequence[Row], *, group: str, series: str, panels: Sequence[Panel]
) -> Path:
    """One PNG: for each panel, bars of ``panel(row)`` grouped by ``row[group]``, one colour per
    ``row[series]`` (both in the order the rows first name them), each bar labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(str(r[group]) for r in rows))
    names = list(dict.fromkeys(str(r[series]) for r in rows))
    last = {(str(r[group]), str(r[series])): r for r in rows}
    # Panels stacked, so that a chart stays readable at the README's width.
    wide = min(12.0, max(6.5, 3.5 + 0.45 * len(last)))
    # The legend goes under the panels, where it hides no bar.
    columns = 3
    legend = 0.25 * -(-len(names) // columns) + 0.2
    height = 3.0 * len(panels) + 0.6 + legend
    figure, axes = plt.subplots(len(panels), 1, figsize=(wide, height))
    axes = [axes] if len(panels) == 1 else list(axes)
    others = iter(_OTHERS * 4)
    colours = {n: _COLOURS.get(n) or next(others) for n in names}
    for axis, (label, value) in zip(axes, panels, strict=True):
        measured = {cell: value(row) for cell, row in last.items()}
        # Each group's bars side by side and centred, with no gap for a cell not measured.
        present = {g: [n for n in names if measured.get((g, n)) is not None] for g in groups}
        width = 0.8 / max(1, *(len(p) for p in present.values()))
        for name in names:
            xs, heights = [], []
            for j, key in enumerate(groups):
                if name in present[key]:
                    k = present[key].index(name)
                    xs.append(j + width * (k + 0.5 - len(present[key]) / 2))
                    heights.append(measured[key, name])
            drawn = axis.bar(xs, heights, width, label=name, color=colours[name])
            axis.bar_label(drawn, fmt=_label_format(heights), fontsize=7, padding=1)
        axis.set_xticks(range(len(groups)), groups, rotation=15 if len(groups) > 3 else 0)
        axis.set_ylabel(label)
        axis.margins(y=0.12)
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, legend / height, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _label_format(heights: Sequence[float]) -> str:
    return "{:,.0f}" if heights and max(heights) >= 100 else "{:.2f}"


def _number(cell: Any) -> float | None:
    """A table cell as a number: ``1,234.5``, ``0.64x``, ``0.22 (0.19-0.27)``; None for ``—``."""
    if isinstance(cell, (int, float)):
        return float(cell)
    found = re.match(r"\s*\**([0-9][0-9,]*(?:\.[0-9]+)?)", str(cell))
    return float(found[1].replace(",", "")) if found else None


def markdown_rows(text: str) -> list[dict[str, str]]:
    """Every row of every markdown table in ``text``, keyed by its header's cells (a header cell's
    parenthesised note dropped: ``receiver CPU s/GB (range)`` is ``receiver CPU s/GB``; so is a
    dataset's: ``study (1,000 x 0.5 MB)`` is ``study``)."""
    lines = text.splitlines()
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if re.fullmatch(r"\|[-:| ]+\|", after.strip()):  # the line above a separator: a header
            header = [re.sub(r"\s*\(.*\)$", "", c) for c in cells]
        elif header and not re.fullmatch(r"\|[-:| ]+\|", line.strip()):
            row = dict(zip(header, cells, strict=False))
            if "dataset" in row:
                row["dataset"] = row["dataset"].split(" (")[0]
            rows.append(row)
    return rows


def _latest(rows: Iterable[Row], key: Sequence[str]) -> list[Row]:
    """One row per ``key`` (the last one), in the order the cells were first seen; rows without
    the key's columns (another table's) left out."""
    cells: dict[tuple[str, ...], Row] = {}
    for row in rows:
        if not all(k in row for k in key):
            continue
        cells[tuple(str(row.get(k)) for k in key)] = row
    return list(cells.values())


def _read(paths: Sequence[Path], from_json: Callable[[Any], list[dict[str, Any]]]) -> list[Row]:
    """The rows of each file in turn (a later file's row for a cell wins in :func:`_latest`)."""
    rows: list[Row] = []
    for path in paths:
        if path.suffix == ".json":
            rows.extend(from_json(json.loads(path.read_text())))
        else:
            rows.extend(markdown_rows(path.read_text()))
    return rows


def _ok(row: Row) -> bool:
    return str(row.get("status", "ok")) == "ok"


def _metric(name: str) -> Callable[[Row], float | None]:
    return lambda row: _number(row.get(name)) if _ok(row) else None


def _per_dataset(
    source: Path, out: Path, rows: Sequence[Row], title: str, *, group: str, series: str, cpu: str
) -> list[Path]:
    """A chart per dataset: speed (MB/s for ``big``, one file; else files/s) and ``cpu``."""
    made = []
    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        these = [r for r in rows if r["dataset"] == dataset]
        speed = "MB/s" if dataset == "big" else "files/s"
        made.append(
            bars(
                out / f"{source.stem}-{dataset}.png",
                title.format(dataset=dataset),
                these,
                group=group,
                series=series,
                panels=[(speed, _metric(speed)), (cpu, _metric(cpu))],
            )
        )
    return made


# --- e2e: senders per sink -------------------------------------------------------------------


def _e2e_rows(raw: Any) -> list[dict[str, Any]]:
    return [
        {
            "sender": r["sender"],
            "sink": r["sink"],
            "dataset": r["dataset"],
            "status": r["status"],
            "files/s": r.get("files_per_s"),
            "MB/s": r.get("mb_per_s"),
            "sender CPU s/GB": (
                r["cpu_seconds"] / (r["bytes"] / GB) if r.get("cpu_seconds") is not None else None
            ),
        }
        for r in raw["runs"]
    ]


def e2e_charts(sources: Sequence[Path], out: Path) -> list[Path]:
    source = sources[0]
    rows = _latest(_read(sources, _e2e_rows), ("dataset", "sink", "sender"))
    made = _per_dataset(
        source,
        out,
        rows,
        "e2e, {dataset}: each sender into each sink (start-up included)",
        group="sink",
        series="sender",
        cpu="sender CPU s/GB",
    )
    headline = [r for r in rows if r["dataset"] == "study" and r["sink"] == "storescp-nodelay"]
    if headline:
        made.append(
            bars(
                out / f"{source.stem}-headline.png",
                "1,000 x 0.5 MB into DCMTK storescp: files/s, one association, start-up included",
                headline,
                group="sender",
                series="sender",
                panels=[("files/s", _metric("files/s"))],
            )
        )
    return made


# --- receive: receivers per sender -----------------------------------------------------------


def _receive_rows(raw: Any) -> list[dict[str, Any]]:
    return [
        {
            "dataset": r["dataset"],
            "sender": r["sender"],
            "receiver": r["receiver"],
            "status": r["status"],
            "MB/s": r["bytes"] / 1e6 / r["seconds"],
            "files/s": r["files"] / r["seconds"],
            "receiver CPU s/GB": r["receiver_cpu"] / (r["bytes"] / GB),
        }
        for r in raw
    ]


def receive_charts(sources: Sequence[Path], out: Path) -> list[Path]:
    source = sources[0]
    rows = _latest(_read(sources, _receive_rows), ("dataset", "sender", "receiver"))
    return _per_dataset(
        source,
        out,
        rows,
        "receive, {dataset}: each receiver, fed by each sender",
        group="receiver",
        series="sender",
        cpu="receiver CPU s/GB",
    )


# --- route: routers per sink -----------------------------------------------------------------


def _route_rows(raw: Any) -> list[dict[str, Any]]:
    runs = raw["runs"] if isinstance(raw, dict) else raw
    return [
        {
            "dataset": r["dataset"],
            "sink": r.get("sink", "ignore"),
            "router": r["router"],
            "status": r.get("status", "ok"),
            "files/s": r["files"] / r["seconds"],
            "MB/s": r["bytes"] / 1e6 / r["seconds"],
            "router CPU s/GB": r["cpu"] / (r["bytes"] / GB) if r.get("cpu") is not None else None,
        }
        for r in runs
    ]


def route_charts(sources: Sequence[Path], out: Path) -> list[Path]:
    source = sources[0]
    # The first tables (issue 11) had no sink column: storescp --ignore.
    rows = [{"sink": "ignore", **r} for r in _read(sources, _route_rows)]
    # "before: ..." rows ran an older tree once, for one comparison: not a router of today.
    rows = [r for r in rows if not str(r.get("router", "")).startswith("before:")]
    rows = _latest(rows, ("dataset", "sink", "router"))
    return _per_dataset(
        source,
        out,
        rows,
        "route, {dataset}: storescu -> router -> storescp, per sink",
        group="sink",
        series="router",
        cpu="router CPU s/GB",
    )


def after_run(chart: Callable[[Sequence[Path], Path], list[Path]], source: Path) -> None:
    """A suite's charts from the results it just wrote, beside them; without matplotlib (the
    ``bench`` extra) the run keeps its numbers and says how to get the charts."""
    try:
        made = chart([source], source.parent)
    except ImportError as exc:
        print(f"charts skipped ({exc}): pip install 'fastpush[bench]'", file=sys.stderr)
        return
    for path in made:
        print(f"chart: {path}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Each may be given again: a later file's row for the same cell wins; the first names the PNGs.
    parser.add_argument("--e2e", type=Path, action="append")
    parser.add_argument("--receive", type=Path, action="append")
    parser.add_argument("--route", type=Path, action="append")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    # The recorded results: the headline's study into storescp-nodelay was re-run apart.
    for sources, default, chart in (
        (args.e2e, ["e2e.json", "e2e-study-nodelay.json"], e2e_charts),
        (args.receive, ["receive.md"], receive_charts),
        (args.route, ["route.md"], route_charts),
    ):
        sources = sources or [RESULTS / name for name in default]
        if all(source.exists() for source in sources):
            for made in chart(sources, args.out):
                print(made, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
