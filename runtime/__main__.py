"""``python -m peerbox``: the same as the ``peerbox`` command."""

from peerbox.cli import console_main

if __name__ == "__main__":
    console_main()
