"""The ``webhook-mcp`` console script. An assistant's host spawns ``webhook-mcp serve`` and waits
for its first answer, so until then the garbage collector is paused: a start makes hundreds of
thousands of objects (modules, classes, schemas) and frees almost none, and collecting while
they are made is a tenth of a cold start. What exists by the first answer lives as long as the
process, so it is then frozen out of later collections (``resume_gc``)."""

from __future__ import annotations

import gc
import sys


def resume_gc() -> None:
    """Collect again from now on, leaving out everything made so far (it lives until exit)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main() -> int:
    gc.disable()
    try:
        from webhook_mcp.interfaces.cli import main as run

        return run()
    finally:
        resume_gc()


if __name__ == "__main__":
    sys.exit(main())
