"""The quickstart's first-start admin key (``bulwark serve``): created once when the database
has no key, printed once, kept in a file only its owner can read; later starts say where it
is."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.api.server import announce, ensure_admin_key
from backend.services.keys import read_secret_file
from tests.api.conftest import SettingsFactory, bearer, running


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def stale_key_file(directory: Path) -> Path:
    directory.chmod(0o755)
    path = directory / "admin.key"
    path.write_text("stale\n")
    path.chmod(0o644)
    return path


async def test_first_start_creates_the_admin_key_once(
    make_settings: SettingsFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    path = tmp_path / "state" / "keys" / "admin.key"

    first = await ensure_admin_key(settings, path)
    assert first.secret is not None
    assert read_secret_file(path) == first.secret
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    announce(first)
    printed = capsys.readouterr().out
    assert first.secret in printed
    assert str(path) in printed

    later = await ensure_admin_key(settings, path)
    assert later.secret is None
    assert later.file_exists
    announce(later)
    printed = capsys.readouterr().out
    assert f"The local admin API key is in {path}" in printed
    assert first.secret not in printed

    path.unlink()
    gone = await ensure_admin_key(settings, path)
    assert (gone.secret, gone.file_exists) == (None, False)
    announce(gone)
    assert "bulwark keys create" in capsys.readouterr().out

    async with running(settings) as api:  # the key is an admin key of that database
        response = await api.client.get("/v1/admin/breakers", headers=bearer(first.secret))
        assert response.status_code == 200


async def test_an_existing_key_file_is_rewritten_private(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    path = stale_key_file(tmp_path)
    created = await ensure_admin_key(make_settings(), path)
    assert read_secret_file(path) == created.secret
    assert mode(path) == 0o600
    assert mode(tmp_path) == 0o755  # an existing directory is left as is
