"""pynetdicom as a receiver: ``python pynetdicom_scp.py PORT [--od DIR]``.

Accepts every storage SOP class in every transfer syntax pynetdicom knows; the C-STORE handler
drops the dataset, or with ``--od`` writes it as a Part-10 file the way pynetdicom's own
documentation does (``event.encoded_dataset()`` after the file meta). Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

# Every syntax the benchmarks send, with nothing converted on the way in.
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--od", type=Path)
    args = parser.parse_args()

    def on_store(event: Any) -> int:
        if args.od is not None:
            name = event.request.AffectedSOPInstanceUID
            with open(args.od / name, "wb") as f:
                f.write(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = 131072
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, SYNTAXES)
    ae.add_supported_context(Verification, SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
