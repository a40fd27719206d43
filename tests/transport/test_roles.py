"""``cxhub run --role``: a misspelt role is refused before anything starts (the roles themselves
run as real processes in tests/cluster)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli import app


def test_an_unknown_role_is_refused_with_the_roles_there_are(tmp_path: Path) -> None:
    path = tmp_path / "cxhub.yaml"
    path.write_text(f'store: {{url: "sqlite:///{tmp_path / "cxhub.db"}"}}\n', encoding="utf-8")
    out = CliRunner().invoke(app, ["run", "--config", str(path), "--role", "recevier"], env={"CXHUB_SECRET_KEY": "k"})
    assert out.exit_code == 2
    assert "--role 'recevier': one of all, receiver, worker" in out.output
    assert not (tmp_path / "cxhub.db").exists()  # refused before the store was touched
