"""The receiving side: the storage server (``server``), each accepted association
(``association``), what is accepted (``negotiation``), where files go (``storage``) and what the
server hands its user (``received``).

Uses ``transport``, ``dataset`` and ``wire``; never ``send``.
"""
