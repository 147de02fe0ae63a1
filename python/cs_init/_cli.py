"""The ``cs-init`` console script: the Rust binary's command line (subcommands, flags, exit codes,
output bytes), run in this process by the extension, so that no Rust toolchain is needed."""

import signal
import sys

from . import _native


def main():
    # The command installs its own Ctrl-C handling (exit 130, nothing written; the service stops
    # gracefully); Python's handler would only leave a KeyboardInterrupt pending behind it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.cli_main(sys.argv))
