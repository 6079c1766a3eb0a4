"""Several associations from one shared queue, against real peers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fastpush
from fastpush import Outcome

from support.peers import Orthanc, StoreSCPFactory, dataset_bytes, run_cli

pytestmark = pytest.mark.interop
ENGINES = ["rust", "python"]


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from fastpush.synthetic import write_study

    return write_study(tmp_path_factory.mktemp("many"), count=60, pixel_bytes=16 * 1024)


@pytest.mark.parametrize("engine", ENGINES)
def test_three_associations_into_forking_storescp(
    storescp: StoreSCPFactory, many_files: list[Path], tmp_path: Path, engine: str
) -> None:
    scp = storescp("--fork", "+B")
    report = tmp_path / "report.jsonl"
    proc = run_cli(
        "store",
        scp.host,
        str(scp.port),
        str(many_files[0].parent),
        "-aec",
        scp.aet,
        "--associations",
        "3",
        "--engine",
        engine,
        "--report",
        str(report),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(line["path"] for line in lines) == sorted(map(str, many_files))
    assert all(line["outcome"] == "stored" and line["attempts"] == 1 for line in lines)
    assert {line["association"] for line in lines} == {1, 2, 3}
    stored = scp.stored_files()
    assert len(stored) == len(many_files)  # each exactly once: +B names files by UID
    by_uid = {f.name.split(".", 1)[1]: f for f in stored}
    for line in lines:
        assert dataset_bytes(by_uid[line["sop_instance_uid"]]) == dataset_bytes(line["path"])


@pytest.mark.parametrize("engine", ENGINES)
def test_three_associations_into_orthanc(
    orthanc: Orthanc, many_files: list[Path], engine: str
) -> None:
    results = fastpush.push(
        many_files,
        "127.0.0.1",
        orthanc.dicom_port,
        called_ae=orthanc.aet,
        engine=engine,
        associations=3,
    )
    assert [r.outcome for r in results].count(Outcome.STORED) == len(many_files)
    assert {r.association for r in results} == {1, 2, 3}
    assert orthanc.sop_instance_uids() == {r.sop_instance_uid for r in results}
    assert len(orthanc.instances()) == len(many_files)


def test_max_per_association_reassociates(
    storescp: StoreSCPFactory, many_files: list[Path]
) -> None:
    scp = storescp("--fork")
    results = fastpush.push(many_files[:10], scp.host, scp.port, max_per_association=4)
    assert all(r.outcome is Outcome.STORED for r in results)
    assert [r.association for r in results] == [1] * 4 + [2] * 4 + [3] * 2


def test_more_than_128_contexts_split_across_associations(
    storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    from fastpush.synthetic import write_study

    # 130 made-up SOP classes: one presentation context each, more than one association holds.
    classes = [f"1.2.826.0.1.3680043.8.498.77.{n}" for n in range(130)]
    files = write_study(
        tmp_path,
        count=130,
        pixel_bytes=64,
        sop_classes=classes,
        transfer_syntaxes=["1.2.840.10008.1.2.1"],
    )
    scp = storescp("-pm", "--fork")
    results = fastpush.push(files, scp.host, scp.port, called_ae=scp.aet)
    assert all(r.outcome is Outcome.STORED for r in results), {r.reason for r in results}
    # Two contexts per class (its own syntax, and the fallback for conversion): 64 classes fit
    # one association, so 130 take three.
    assert len({r.association for r in results}) == 3
