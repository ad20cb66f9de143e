"""Configuration from the environment: safe production defaults, laptop defaults, team services."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def clean_environment(**env) -> dict:
    """This process's environment without the settings' variables; VAR_DIR an empty folder (so no
    var/local.env that `make run` wrote in the checkout is read) unless given."""
    clean = {k: v for k, v in os.environ.items() if k not in {
        "DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "S3_BUCKET", "USE_TLS", "CACHE_URL",
        "DJANGO_SETTINGS_MODULE", "VAR_DIR", "ENGINE_MANAGE_IN_VENV"}}
    return clean | {"VAR_DIR": tempfile.mkdtemp(prefix="settings-test-")} | env


def settings_value(expression: str, **env) -> subprocess.CompletedProcess:
    clean = clean_environment(**env)
    code = f"import engine.settings as s; print({expression})"
    return subprocess.run([sys.executable, "-c", code], env=clean, cwd=ROOT, capture_output=True, text=True)


def test_production_refuses_to_start_without_a_secret_key():
    result = settings_value("s.SECRET_KEY")
    assert result.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert "run `make run` once" in result.stderr


def test_the_readme_commands_run_outside_make_run_with_the_env_file_it_writes(tmp_path):
    """Issue 15, item 7: `python manage.py <command>` as the README shows it, in a shell that never
    set DEBUG or SECRET_KEY, reads what `make run` (its local-env step) wrote in var/local.env."""
    var = tmp_path / "var"
    made = subprocess.run(["make", "-s", "local-env", f"VAR_DIR={var}", f"PYTHON={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    written = (var / "local.env").read_text()
    assert "DEBUG=1" in written and "SECRET_KEY=" in written
    env = clean_environment(VAR_DIR=str(var))
    check = subprocess.run([sys.executable, "manage.py", "check"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0 and "no issues" in check.stdout, check.stderr
    key = subprocess.run([sys.executable, "-c", "import engine.settings as s; print(s.SECRET_KEY, s.DEBUG)"],
                         env=env, cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert key[0] in written and key[0] != "insecure-development-key-only-for-debug" and key[1] == "True"
    # A second make run keeps the key (sessions stay valid); the environment wins over the file.
    subprocess.run(["make", "-s", "local-env", f"VAR_DIR={var}"], cwd=ROOT, check=True)
    assert (var / "local.env").read_text() == written
    assert settings_value("s.DEBUG", VAR_DIR=str(var), DEBUG="0", SECRET_KEY="k").stdout.strip() == "False"


def test_manage_py_typed_with_a_python_without_django_runs_in_the_checkouts_venv(tmp_path):
    venv = Path(ROOT) / ".venv" / "bin" / "python"
    bare = next((p for p in ("/usr/bin/python3", shutil.which("python3") or "") if p and subprocess.run(
        [p, "-c", "import django"], capture_output=True).returncode != 0), None)
    if not venv.exists() or bare is None:
        pytest.skip("needs the checkout's .venv and a Python without Django")
    env = clean_environment(DEBUG="1")
    result = subprocess.run([bare, "manage.py", "check"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "no issues" in result.stdout, result.stderr


@pytest.mark.parametrize(
    "env, expression, expected",
    [
        ({"DEBUG": "1"}, "s.DATABASES['default']['ENGINE']", "django.db.backends.sqlite3"),
        ({"DEBUG": "1"}, "s.CELERY_BROKER_URL", "filesystem://"),
        ({"DEBUG": "1"}, "s.STORAGES['default']['BACKEND']", "django.core.files.storage.FileSystemStorage"),
        ({"SECRET_KEY": "x", "DATABASE_URL": "postgres://u:p@db:5432/engine"},
         "s.DATABASES['default']['ENGINE']", "django.db.backends.postgresql"),
        ({"SECRET_KEY": "x", "CELERY_BROKER_URL": "redis://redis:6379/0"}, "s.CELERY_BROKER_URL",
         "redis://redis:6379/0"),
        ({"SECRET_KEY": "x", "S3_BUCKET": "b", "S3_ENDPOINT_URL": "http://minio:9000"},
         "s.STORAGES['default']['BACKEND'], s.AWS_S3_ENDPOINT_URL",
         "storages.backends.s3.S3Storage http://minio:9000"),
        ({"SECRET_KEY": "x"}, "s.ALLOWED_HOSTS", "[]"),
        ({"SECRET_KEY": "x", "USE_TLS": "1"}, "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE", "True True"),
    ],
)
def test_environment_selects_the_services(env, expression, expected):
    result = settings_value(expression, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
