"""The DICOM upper layer on the wire: PDUs (``pdu``), DIMSE command sets and every status
(``dimse``), user identity negotiation (``identity``), PDV reassembly (``reassembly``), and what
the command line's parser reads without loading them (``limits``: each role's default maximum
PDU length, the AE title rule, the identity token kinds).

Pure protocol: bytes in, typed values out, and back. Imports nothing of fastpush but ``errors``
and ``uids``.
"""
