"""One input and its dataset: the ``Item`` (``item``, a leaf), finding and describing inputs
(``scan``), the one Part-10 file meta writer (``meta``), the bounded element-header walk
(``header``), transfer syntax conversion (``convert``, the twin of the Rust converter),
decompression (``decompress``) and what a transport sends (``payload``).

Never reads pixel data to decide anything. Imports nothing of fastpush but ``errors``, ``uids``
and ``logtext``.
"""
