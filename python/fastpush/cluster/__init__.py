"""The same push spread over a Dask cluster: the driver (``driver``) and what runs on each
worker (``worker``).

Uses ``send`` and below.
"""
