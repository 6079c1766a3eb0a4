"""Interop with Orthanc, a real PACS: push, then read every instance back over REST."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread

import fastpush
from fastpush import Outcome

from support.peers import Orthanc

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_push_study_and_read_back(orthanc: Orthanc, study: list[Path], engine: str) -> None:
    results = fastpush.push(
        study, "127.0.0.1", orthanc.dicom_port, called_ae=orthanc.aet, engine=engine
    )
    assert all(r.outcome is Outcome.STORED for r in results), [r.reason for r in results]
    instances = orthanc.instances()
    assert len(instances) == len(study)
    sources = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in study}
    for instance in instances:
        stored = dcmread(BytesIO(orthanc.instance_file(instance)))
        source = sources.pop(str(stored.SOPInstanceUID))
        # Orthanc may re-encode the file meta; the dataset must be the same element by element.
        assert [e.tag for e in stored] == [e.tag for e in source]
        for element in source:
            assert stored[element.tag].value == element.value, element.tag
    assert not sources


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_echo(orthanc: Orthanc, engine: str) -> None:
    assert fastpush.echo("127.0.0.1", orthanc.dicom_port, called_ae=orthanc.aet, engine=engine) == 0
