"""pynetdicom as a sender, in its best mode: ``python pynetdicom_send.py HOST PORT AET PATH...``.

One association for all files, one presentation context per (SOP class, transfer syntax) found
in the file metas, and ``STORE_SEND_CHUNKED_DATASET`` so each file goes out of the file in chunks
via ``send_c_store(path)`` instead of being decoded into a Dataset first.

Prints ``stored N, failed M`` and exits 0 only if every file was stored (success or warning).
A DIMSE timeout (pynetdicom waiting for a response that never comes) is reported as a stall.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config

# pynetdicom's own limit on requested presentation contexts per association.
MAX_CONTEXTS = 128
DIMSE_TIMEOUT = 60.0


def _expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return files


def _contexts(files: list[Path]) -> set[tuple[str, str]]:
    """The (SOP class, transfer syntax) pairs the files need, read from their file metas."""
    pairs = set()
    for path in files:
        meta = read_file_meta_info(path)
        pairs.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    return pairs


def _is_stored(status: int) -> bool:
    """Success or one of the warning statuses (the standard's meaning; PS3.7 Annex C)."""
    return status in (0x0000, 0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("aet", help="the called AE title")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()

    _config.STORE_SEND_CHUNKED_DATASET = True
    files = _expand(args.paths)
    pairs = _contexts(files)
    if len(pairs) > MAX_CONTEXTS:
        print(f"needs {len(pairs)} presentation contexts, more than one association holds")
        return 2

    ae = AE(ae_title="PYNETDICOM")
    ae.dimse_timeout = DIMSE_TIMEOUT
    for sop_class, syntax in sorted(pairs):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(args.host, args.port, ae_title=args.aet)
    if not assoc.is_established:
        print("association rejected, aborted or never connected")
        return 2

    stored = 0
    for number, path in enumerate(files, start=1):
        status = assoc.send_c_store(path, msg_id=number % 0x10000)
        # An empty status Dataset means no response came back: a DIMSE timeout or an abort.
        if "Status" in status and _is_stored(int(status.Status)):
            stored += 1
            continue
        if "Status" not in status:
            alive = "association still open" if assoc.is_established else "association lost"
            print(f"stall: no response for {path.name} within {DIMSE_TIMEOUT:.0f} s ({alive})")
            break
        print(f"failed: {path.name}: status 0x{int(status.Status):04X}")
    if assoc.is_established:
        assoc.release()
    print(f"stored {stored}, failed {len(files) - stored}")
    return 0 if stored == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())
