"""Work run in a forked child of the engine's arbiter, which must never return into the arbiter's code:
gunicorn's main loop would then run on in the child."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger("plugboard.engine")


def run_forked(body: Callable[[], int | None]) -> int:
    """Fork. The child runs `body` and ends with the exit code it returns (None: 0; 1, logged, if it raises),
    its logs flushed first even when flushing fails. The parent gets the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = body() or 0
    except BaseException:  # noqa: BLE001 - whatever ends it, the child must not return
        log.exception("process %d failed", os.getpid())
    finally:
        try:
            logging.shutdown()
            sys.stderr.flush()
        finally:
            os._exit(code)
