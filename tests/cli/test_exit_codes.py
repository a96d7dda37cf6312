"""The CLI answers a missing batch or a wrong name with one line and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from db.migrate import upgrade
from tests.conftest import Env


@pytest.mark.parametrize(
    "args",
    [["status", "999"], ["status", "999", "--watch"], ["report", "999"], ["report", "999", "--json"]],
)
def test_a_missing_batch_is_exit_2_in_one_line(env: Env, args: list[str]) -> None:
    upgrade(env().database_url)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == "batch 999 does not exist"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unknown_provider_is_exit_2(env: Env) -> None:
    upgrade(env().database_url)
    result = CliRunner().invoke(app, ["accounts", "resume", "nosuchprovider"])
    assert result.exit_code == 2 and "unknown provider" in result.output


def test_version(env: Env) -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("idbatch ")


@pytest.mark.parametrize("command", ["simulator", "gateway"])
def test_a_taken_port_is_exit_2_in_one_line(env: Env, command: str, tmp_path: Path) -> None:
    import socket

    env(image_roots=f'["{tmp_path}"]')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, [command, "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "pass another --port" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_api_on_a_taken_port_is_exit_2_in_one_line(env: Env, redis_url: str) -> None:
    import socket

    settings = env(broker_url=redis_url)
    upgrade(settings.database_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["api", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


@pytest.mark.parametrize("args", [["batches"], ["batches", "--json"]])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(
    env: Env, tmp_path: Path, args: list[str]
) -> None:
    """``idbatch batches --json | head``: the reader is gone before the first write. Exit 1
    with nothing on stderr, as rich (the table) and click (help) already end such a run;
    before, typer.echo's write became "error: BrokenPipeError: [Errno 32] Broken pipe"."""
    import shlex
    import subprocess
    import sys

    from producers.submit import submit_path
    from simulator.samples import generate_sample

    settings = env()
    upgrade(settings.database_url)
    generate_sample(tmp_path / "cards", 3, seed=3, defects=False, with_back=False)
    submit_path(tmp_path / "cards" / "manifest.csv", settings=settings, enqueue=False)
    cli = shlex.join([sys.executable, "-c", "from app.cli import main; main()", *args])
    # the reader closes its end at once and lingers, so the write meets a closed pipe
    script = f"{cli} 2>{tmp_path / 'err'} | (exec 0<&-; sleep 2); echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "1", done
    assert (tmp_path / "err").read_text() == ""


def test_a_setting_that_is_not_json_is_exit_2_naming_it(env: Env) -> None:
    """``IDBATCH_REVEAL_ACTORS=alice`` (a list wants ``'["alice"]'``): pydantic-settings'
    SettingsError was "error: SettingsError: …", exit 1, though bad settings are exit 2."""
    import os
    import subprocess
    import sys

    env()
    done = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "batches"],
        env={**os.environ, "IDBATCH_REVEAL_ACTORS": "alice"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    expected = "error: invalid settings (IDBATCH_REVEAL_ACTORS: not valid JSON for its type)"
    assert done.stderr.strip() == expected


def test_an_unknown_account_name_is_exit_2(env: Env) -> None:
    upgrade(env().database_url)
    result = CliRunner().invoke(app, ["accounts", "resume", "acedata", "nope"])
    assert result.exit_code == 2 and "acedata has no account 'nope'; its accounts: default" in result.output
    assert CliRunner().invoke(app, ["accounts", "resume", "acedata", "default"]).exit_code == 0


@pytest.mark.parametrize(
    ("accounts", "said"),
    [
        ('{"nosuch": [{"name": "a"}]}', "(IDBATCH_ACCOUNTS: unknown provider 'nosuch'"),
        (
            '{"acedata": [{"name": "a"}, {"name": "a"}]}',
            "(IDBATCH_ACCOUNTS: acedata: two accounts are named alike",
        ),
        (
            '{"acedata": [{"name": "a", "acedata_tokn": "x"}]}',
            "(IDBATCH_ACCOUNTS: acedata.0.acedata_tokn: Extra",
        ),
    ],
)
def test_accounts_settings_say_what_is_wrong_where(env: Env, accounts: str, said: str) -> None:
    """A misspelt provider was ignored (its jobs on the one default account), two accounts
    of one name shared a limiter key; and the line named the variable, not the field."""
    import os
    import subprocess
    import sys

    env()
    done = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "batches"],
        env={**os.environ, "IDBATCH_ACCOUNTS": accounts},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_schema_older_than_the_code_says_db_upgrade(env: Env) -> None:
    """After installing a newer idbatch on an existing database, a missing column read
    "cannot reach the database"."""
    from sqlalchemy import create_engine, text

    settings = env()
    upgrade(settings.database_url)
    with create_engine(settings.database_url).begin() as conn:
        conn.execute(text("ALTER TABLE batch DROP COLUMN accounts"))  # the schema of 0009
    result = CliRunner().invoke(app, ["batches"])
    assert result.exit_code == 2, result.output
    assert "schema is older than this idbatch; run `idbatch db upgrade`" in result.output
