"""The one error type users see, and the wrapper that turns it into a one-line message."""
import signal
import sys


class ImagerecError(Exception):
    """A problem the user can act on: bad params, a bad download, a bad archive or image."""


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_stage(main) -> None:
    """Run a stage's main(); an ImagerecError becomes `error: ...` on stderr and exit code 2.

    Anything else is a bug in imagerec and keeps its traceback. SIGTERM (what `kill` and
    job schedulers send) unwinds like Ctrl-C, so temporary outputs are removed on the way out.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except ImagerecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
