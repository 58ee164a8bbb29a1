"""peerbox's version (a leaf: what ``--version`` and the compile cache's keys read)."""

__version__ = "0.1.0"
