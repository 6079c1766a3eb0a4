"""The sending side: what a connection needs (``options``: ``ConnectionOptions``), the
association as requestor (``association``), presentation context planning (``plan``), the client
pool (``client``), pushes (``push``), retries (``retry``) and results (``results``, ``failure``).

Uses ``transport``, ``dataset`` and ``wire``; never ``receive``.
"""
