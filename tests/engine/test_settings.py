"""Configuration from the environment: safe production defaults, laptop defaults, team services."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def settings_value(expression: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {
        "DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "S3_BUCKET", "USE_TLS", "CACHE_URL",
        "DJANGO_SETTINGS_MODULE"}}
    code = f"import engine.settings as s; print({expression})"
    return subprocess.run([sys.executable, "-c", code], env=clean | env, cwd=ROOT, capture_output=True, text=True)


def test_production_refuses_to_start_without_a_secret_key():
    result = settings_value("s.SECRET_KEY")
    assert result.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in result.stderr


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
