"""A start on a database already at the newest schema does no migration work: one query, and
Alembic is not even imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from webhook_mcp.storage import engine as database


def test_the_declared_head_is_alembics_head() -> None:
    assert database._declared_head() == database.head_revision()


def test_a_database_at_head_is_not_migrated_again(database_url: str, tmp_path: Path) -> None:
    database.upgrade(database_url)
    assert database.current_revision(database_url) == database.head_revision()
    probe = (
        "import sys; from webhook_mcp.storage import engine; engine.upgrade(sys.argv[1]); "
        "print('alembic' in sys.modules)"
    )
    again = subprocess.run([sys.executable, "-c", probe, database_url], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "False", again.stderr
    # A database behind the head still gets Alembic (here: a new one).
    new = f"sqlite:///{tmp_path / 'new.db'}"
    fresh = subprocess.run([sys.executable, "-c", probe, new], capture_output=True, text=True)
    assert fresh.returncode == 0 and fresh.stdout.strip() == "True", fresh.stderr
