"""The routers a user writes by hand today, for ``route.py`` to compare ``fastpush route`` with.

    python route_baselines.py {fastpush|pynetdicom} PORT DEST_PORT JOURNAL

A pynetdicom AE receives every storage SOP class on PORT; each C-STORE is answered success at
once and its dataset handed to a forwarding thread that sends it to 127.0.0.1:DEST_PORT over
one association kept open: with ``fastpush.StoreClient`` (``event.encoded_dataset()`` →
``client.submit()``, as issue 10 describes) or with pynetdicom itself (``send_c_store`` of the
decoded dataset). Nothing is spooled: what is in memory is lost on a crash. Each file forwarded
appends ``{"step": "forwarded", "time": ...}`` to JOURNAL, as ``fastpush route`` journals it.
Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time
from typing import IO, Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom_scp import SYNTAXES


class _Journal:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def forwarded(self, ok: bool) -> None:
        line = json.dumps({"step": "forwarded" if ok else "failed", "time": time.time()})
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


def _with_fastpush(dest: int, journal: _Journal) -> Any:
    import fastpush

    client = fastpush.StoreClient("127.0.0.1", dest, called_ae="ANY-SCP")

    def forward(event: Any) -> None:
        future = client.submit(bytes(event.encoded_dataset()))
        future.add_done_callback(lambda f: journal.forwarded(f.result().ok))

    return forward


def _with_pynetdicom(dest: int, journal: _Journal) -> Any:
    waiting: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        ae = AE(ae_title="ROUTER")
        ae.maximum_pdu_size = 131072
        for context in AllStoragePresentationContexts[:120]:
            ae.add_requested_context(context.abstract_syntax, SYNTAXES[0])
        assoc = ae.associate("127.0.0.1", dest)
        while True:
            ds = waiting.get()
            if ds is None:
                break
            status = assoc.send_c_store(ds)
            journal.forwarded(getattr(status, "Status", 0xFFFF) == 0)
        assoc.release()

    threading.Thread(target=run, daemon=True).start()

    def forward(event: Any) -> None:
        ds = event.dataset
        ds.file_meta = event.file_meta
        waiting.put(ds)

    return forward


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["fastpush", "pynetdicom"])
    parser.add_argument("port", type=int)
    parser.add_argument("dest", type=int)
    parser.add_argument("journal")
    args = parser.parse_args()
    journal = _Journal(open(args.journal, "a"))  # noqa: SIM115 - for the life of the process
    make = _with_fastpush if args.kind == "fastpush" else _with_pynetdicom
    forward = make(args.dest, journal)

    def on_store(event: Any) -> int:
        forward(event)
        return 0x0000

    ae = AE(ae_title="ROUTER")
    ae.maximum_pdu_size = 131072
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main())
