"""Start and stop the real peers (cupsd, ippeveprinter, the cloud, the node) on loopback.

Used by the tests, ``make demo`` and the benchmarks; nothing here is a stand-in for a peer.
"""
