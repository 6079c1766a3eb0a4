"""Names from the wire (Study and SOP Instance UIDs, the calling AE title) as a hostile sender
picks them: whatever the layout, with or without unique file names, nothing is written outside
the output folder, nothing in its parent is touched, and two different values never share a
file or folder (issue 15, finding 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastpush.receive.server import StorageServer

from support.fakesender import FakeSender, dataset

# Values a UID field can carry (ASCII: the command set refuses anything else).
BAD_UIDS = [
    "..",
    ".",
    "...",
    "1.02.3",  # a leading zero
    "1." + "2" * 63,  # 65 characters
    "1/2",
    "1_2",  # what the old cleaner made of "1/2"
    "../../escaped",
    "/tmp/absolute",
    "1.2\x003",
    "1.2.",
    ".1.2",
    "x-1",
]
# Calling AE titles the negotiation lets through (1 to 16 ASCII characters, no backslash).
BAD_AES = ["..", ".", "...", "a/b", "../up", "/", "A\x00B", ".hidden", "x-abc", "X-ABC", "OK AE"]
SENTINEL = "CT.1.2.3"


def _out(tmp_path: Path) -> Path:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / SENTINEL).write_bytes(b"precious")
    return parent / "out"


def _only_inside(out: Path) -> list[Path]:
    """Every file written, after checking the parent holds only the output folder and its
    untouched sentinel, and no temporary file is left."""
    parent = out.parent
    assert sorted(p.name for p in parent.iterdir()) == sorted([SENTINEL, "out"])
    assert (parent / SENTINEL).read_bytes() == b"precious"
    files = [p for p in out.rglob("*") if p.is_file()]
    for path in files:
        assert path.resolve().is_relative_to(out.resolve()), path
        assert not path.name.endswith(".part"), path
    return files


@pytest.mark.parametrize("unique", [False, True], ids=["replace", "unique"])
@pytest.mark.parametrize("layout", ["flat", "study", "calling-ae"])
def test_hostile_instance_uids(tmp_path: Path, layout: str, unique: bool) -> None:
    out = _out(tmp_path)
    with (
        StorageServer(
            "127.0.0.1", 0, directory=out, layout=layout, unique_filenames=unique, timeout=10
        ) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate(calling_ae="SCU")
        for n, uid in enumerate(BAD_UIDS, 1):
            assert sender.store(uid, dataset(uid, study_uid="1.2.3", pixels=256), n) == 0, uid
    files = _only_inside(out)
    assert len({p.name for p in files}) == len(files) == len(BAD_UIDS)
    assert {p.parent.name for p in files} == {
        "flat": {"out"},
        "study": {"1.2.3"},
        "calling-ae": {"SCU"},
    }[layout]


@pytest.mark.parametrize("unique", [False, True], ids=["replace", "unique"])
def test_hostile_study_uids(tmp_path: Path, unique: bool) -> None:
    out = _out(tmp_path)
    with (
        StorageServer(
            "127.0.0.1", 0, directory=out, layout="study", unique_filenames=unique, timeout=10
        ) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate()
        for n, study in enumerate(BAD_UIDS, 1):
            uid = f"1.2.{n}"
            assert sender.store(uid, dataset(uid, study_uid=study, pixels=256), n) == 0, study
    files = _only_inside(out)
    assert len(files) == len(BAD_UIDS)
    # One folder per study value, each directly in the output folder.
    assert {p.parent.parent for p in files} == {out}
    assert len({p.parent.name for p in files}) == len(BAD_UIDS)


@pytest.mark.parametrize("unique", [False, True], ids=["replace", "unique"])
def test_hostile_calling_aes(tmp_path: Path, unique: bool) -> None:
    out = _out(tmp_path)
    with StorageServer(
        "127.0.0.1", 0, directory=out, layout="calling-ae", unique_filenames=unique, timeout=10
    ) as server:
        for n, title in enumerate(BAD_AES, 1):
            with FakeSender(server.port) as sender:
                sender.associate(calling_ae=title)
                uid = f"1.3.{n}"
                assert sender.store(uid, dataset(uid, pixels=256)) == 0, title
    files = _only_inside(out)
    assert len(files) == len(BAD_AES)
    assert {p.parent.parent for p in files} == {out}
    assert len({p.parent.name for p in files}) == len(BAD_AES)
    assert (out / "OK AE").is_dir()  # a title that is a safe name is kept as it is


def test_path_component_keeps_uids_and_maps_the_rest_apart() -> None:
    from fastpush.receive.storage import path_component, valid_uid

    assert path_component("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert path_component("0.0") == "0.0"
    assert path_component("CT1", ae_title=True) == "CT1"
    for values, ae_title in ((BAD_UIDS, False), (BAD_AES, True)):
        names = [path_component(v, ae_title=ae_title) for v in values]
        for name in names:
            assert not valid_uid(name)
            assert name not in (".", "..") and "/" not in name and "\0" not in name
            assert len(name) < 100
        assert len(set(names)) == len(names)


def test_inside_refuses_a_way_out(tmp_path: Path) -> None:
    from fastpush.receive.storage import inside

    assert inside(tmp_path, "a") == tmp_path / "a"
    for escape in ("..", ".", "../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError):
            inside(tmp_path, escape)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ValueError):
        inside(tmp_path, "link/x")


def test_folder_that_links_out_is_refused(tmp_path: Path) -> None:
    """A layout folder that is a symbolic link out of the output folder (planted, or left by
    an old tool) is not written through: 0xC000, nothing lands in the parent."""
    out = _out(tmp_path)
    out.mkdir()
    (out / "EVIL").symlink_to(out.parent)
    with (
        StorageServer("127.0.0.1", 0, directory=out, layout="calling-ae", timeout=10) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate(calling_ae="EVIL")
        assert sender.store("1.2.3", dataset("1.2.3", pixels=256)) == 0xC000
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([SENTINEL, "out"])
    assert [p.name for p in out.iterdir()] == ["EVIL"]


def test_files_named_by_the_handler_need_a_handler(tmp_path: Path) -> None:
    # Without on_store every file would stay at its temporary name.
    with pytest.raises(ValueError, match="on_store"):
        StorageServer("127.0.0.1", 0, directory=tmp_path, named_by_handler=True)
