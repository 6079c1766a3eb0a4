"""Moving a message's bytes: choosing the data path (``connect``: the Rust core or the
pure-Python one; ``engines``: their names), the pure-Python transport (``pure``) and TLS options
(``tls``).

Uses ``dataset`` (conversion while sending) and ``wire``; knows nothing of associations.
"""
