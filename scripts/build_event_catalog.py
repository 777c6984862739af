"""Write src/webhook_mcp/core/builtin_events.json from the built-in payload models
(webhook_mcp.core.builtin_events). Run it after changing a model, a description or an example:

    .venv/bin/python scripts/build_event_catalog.py          # rewrite the file
    .venv/bin/python scripts/build_event_catalog.py --check  # exit 1 if it is out of date

tests/core/test_builtin_events.py fails while the file is out of date."""

from __future__ import annotations

import argparse
import sys

from webhook_mcp.core.builtin_events import catalog_text
from webhook_mcp.core.catalog import CATALOG_FILE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether the file is up to date")
    args = parser.parse_args()
    wanted = catalog_text()
    current = CATALOG_FILE.read_text(encoding="utf-8") if CATALOG_FILE.exists() else None
    if args.check:
        if current != wanted:
            print(f"{CATALOG_FILE} is out of date; run scripts/build_event_catalog.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        CATALOG_FILE.write_text(wanted, encoding="utf-8")
        print(f"wrote {CATALOG_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
