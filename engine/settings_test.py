"""Settings for the test suite: the real settings, with PostgreSQL and Redis on loopback
unless the environment says otherwise (`make test` starts both)."""
import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DEBUG", "0")  # never make run's var/local.env's DEBUG=1, whatever VAR_DIR says
os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/engine")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/15")
# Tasks the tests enqueue without a worker land in the filesystem broker: keep them out of the tree.
os.environ.setdefault("VAR_DIR", os.path.join(tempfile.gettempdir(), "engine-test-var"))

from engine.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405

