"""The DICOM upper layer on the wire: PDUs and each role's default maximum PDU length
(``pdu``), DIMSE command sets and every status (``dimse``), user identity negotiation
(``identity``) and PDV reassembly (``reassembly``).

Pure protocol: bytes in, typed values out, and back. Imports nothing of fastpush but ``errors``
and ``uids``.
"""
