"""The router: receive, spool durably, forward (``router``), one destination's ordered
lanes (``forwarder``), the spool folder (``spool``) and the journal of events (``journal``).

Uses ``send`` and ``receive`` and everything below them.
"""
