"""Settings, all from environment variables (see the README's configuration table).

Defaults make a laptop run need nothing but Python: SQLite, Celery's filesystem
broker, local media files. Setting DATABASE_URL, CELERY_BROKER_URL and the S3
variables moves the same code onto PostgreSQL, Redis and S3.
"""
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# The laptop's own settings, written by `make run` (DEBUG=1 and a secret key of its own), so that
# `python manage.py ...` as the README writes it runs against make run's database and files
# without knowing about them. The environment always wins over the file; servers have no file.
LOCAL_ENV_FILE = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))) / "local.env"
if LOCAL_ENV_FILE.is_file():
    environ.Env.read_env(LOCAL_ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. On a laptop, run `make run` once: it writes "
            f"{LOCAL_ENV_FILE} (DEBUG=1 and a key), which every later command reads.")
    SECRET_KEY = "insecure-development-key-only-for-debug"

# Local state for the laptop setup: SQLite file, media, broker folders.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "engine.errors.csrf_failure"  # JSON with the error shape under /api/

# Behind a TLS-terminating proxy: trust its header and make every cookie secure.
USE_TLS = env.bool("USE_TLS", default=False)
if USE_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's and ReDoc's files, served by the app: /api/v1/docs/ works offline
    "engine",
    "modelzoo",
    "annotation",
    "engine.exports",
    "engine.stats",
    "engine.console",
]

MIDDLEWARE = [
    "engine.stats.middleware.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "engine.middleware.RefuseNulMiddleware",  # %00 in a URL: a 400, not a database error
    "engine.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "engine.middleware.ApiErrorsAsJsonInDebugMiddleware",  # it sees the views' other exceptions first
    "engine.middleware.ServiceUnavailableMiddleware",  # last: database/Redis down is a 503, before the above
]

ROOT_URLCONF = "engine.urls"
WSGI_APPLICATION = "engine.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "engine" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg prepares a statement on its connection after this many runs, but only for
    # server-side-binding cursors (engine/db.py): the written-out statements of the token
    # look-up and the annotation queue; the ORM's cursors bind client-side and are never prepared.
    # DB_PREPARE_THRESHOLD=none turns it off (for a transaction-pooling proxy such as PgBouncer
    # before 1.21).
    _prepare = env.str("DB_PREPARE_THRESHOLD", default="5")
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        None if _prepare.lower() in ("", "none", "off") else int(_prepare))
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker) share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared cache (login throttling, rate figures): Redis when CACHE_URL is set, else per process.
CACHE_URL = env.str("CACHE_URL", default="")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "engine"}
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

# Failed logins (browser and API, engine/auth.py): this many failures for one username within
# the window lock that username until the window has passed (429 with Retry-After). Per client
# address the first LOGIN_ADDRESS_FREE_FAILURES failures in the window are free, then each
# further one holds the address for a delay doubling from 1 s up to LOGIN_ADDRESS_MAX_DELAY_S:
# a guesser is slowed down, the people behind the same proxy are not locked out.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_S = env.int("LOGIN_FAILURE_WINDOW_S", default=900)
LOGIN_ADDRESS_FREE_FAILURES = env.int("LOGIN_ADDRESS_FREE_FAILURES", default=50)
LOGIN_ADDRESS_MAX_DELAY_S = env.int("LOGIN_ADDRESS_MAX_DELAY_S", default=60)
# Addresses or networks (comma-separated) of the reverse proxies in front of the engine: only from
# these is X-Forwarded-For believed, to find the client's address (its right-most untrusted hop).
# Empty: the peer's own address is the client's.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# /metrics answers a logged-in staff user, or a scraper sending `Authorization: Bearer <METRICS_TOKEN>`.
# Empty (the default): staff only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Who may create projects (and so become a lead, who chooses the project's checkpoints):
# "staff" (the default, for a team deployment: staff users and site admins create projects and
# add the leads) or "everyone" (any logged-in user, e.g. a personal instance). Management commands
# (demo, simulate) create theirs as the system either way, so `make run`'s demo needs nothing here.
PROJECT_CREATORS = env.str("PROJECT_CREATORS", default="staff")
if PROJECT_CREATORS not in ("staff", "everyone"):
    raise ImproperlyConfigured(f"PROJECT_CREATORS must be 'staff' or 'everyone', not {PROJECT_CREATORS!r}.")

# What a generator backend may hand over per candidate (modelzoo.representations): a larger splat or
# GLB fails the item with the reason, before anything is stored.
MODELZOO_MAX_GAUSSIANS = env.int("MODELZOO_MAX_GAUSSIANS", default=2_000_000)
MODELZOO_MAX_GLB_BYTES = env.int("MODELZOO_MAX_GLB_BYTES", default=256 * 1024 * 1024)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [p for p in [BASE_DIR / "frontend" / "dist"] if p.exists()]

# Storage: local files by default; any S3-compatible service when a bucket is named.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
AWS_STORAGE_BUCKET_NAME = env.str("S3_BUCKET", default="")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default=None)
    AWS_ACCESS_KEY_ID = env.str("S3_ACCESS_KEY_ID", default=None)
    AWS_SECRET_ACCESS_KEY = env.str("S3_SECRET_ACCESS_KEY", default=None)
    AWS_S3_REGION_NAME = env.str("S3_REGION", default="us-east-1")
    AWS_S3_ADDRESSING_STYLE = env.str("S3_ADDRESSING_STYLE", default="path")
    AWS_QUERYSTRING_EXPIRE = env.int("S3_PRESIGN_SECONDS", default=3600)
    AWS_S3_FILE_OVERWRITE = True  # keys are content hashes: same key, same bytes
    AWS_DEFAULT_ACL = None
    DEFAULT_STORAGE = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Content-Security-Policy of every response (engine/csp.py): directive -> sources. "'nonce'" is
# the request's nonce, for the inline elements a page cannot avoid (Swagger UI's start-up script);
# the engine's pages load only files. three.js's GLTFLoader reads a GLB's embedded textures
# through blob: URLs (fetched, then drawn), hence blob: beside 'self'. Stored files on S3 are
# presigned redirects to the bucket's origin, which images and the viewer's fetches must reach.
# CSP_REPORT_ONLY=1 sends it as Content-Security-Policy-Report-Only (browsers log, block nothing).
if AWS_STORAGE_BUCKET_NAME:
    _endpoint = urlsplit(AWS_S3_ENDPOINT_URL) if AWS_S3_ENDPOINT_URL else None
    _MEDIA_ORIGINS = [f"{_endpoint.scheme}://{_endpoint.netloc}"] if _endpoint else ["https://*.amazonaws.com"]
else:
    _MEDIA_ORIGINS = []
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    # 'wasm-unsafe-eval' lets pages compile WebAssembly (Spark, the splat renderer, decodes and
    # sorts splats in WebAssembly); it allows no JavaScript eval and no inline script.
    "script-src": ["'self'", "'nonce'", "'wasm-unsafe-eval'"],
    "style-src": ["'self'", "'nonce'"],
    "img-src": ["'self'", "data:", "blob:", *_MEDIA_ORIGINS],
    "connect-src": ["'self'", "blob:", *_MEDIA_ORIGINS],
    "worker-src": ["'self'", "blob:"],
    "font-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
CONTENT_SECURITY_POLICY_REPORT_ONLY = env.bool("CSP_REPORT_ONLY", default=False)

FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024

# Ingest limits: images above this many pixels are refused before decoding (decompression bombs);
# zip uploads above these sizes are refused before extraction.
INGEST_MAX_PIXELS = env.int("INGEST_MAX_PIXELS", default=40_000_000)
INGEST_MAX_ZIP_BYTES = env.int("INGEST_MAX_ZIP_BYTES", default=2 * 1024**3)
INGEST_MAX_ZIP_MEMBERS = env.int("INGEST_MAX_ZIP_MEMBERS", default=100_000)
# Uploads (the console's import, POST .../uploads/): staged in chunks in this folder, which the
# workers read (a volume shared by the web and worker machines); removed when their import is done.
INGEST_UPLOAD_DIR = Path(env.str("INGEST_UPLOAD_DIR", default=str(VAR_DIR / "uploads")))
INGEST_MAX_UPLOAD_BYTES = env.int("INGEST_MAX_UPLOAD_BYTES", default=10 * 1024**3)
INGEST_MAX_UPLOAD_FILES = env.int("INGEST_MAX_UPLOAD_FILES", default=100_000)
INGEST_UPLOAD_CHUNK_BYTES = env.int("INGEST_UPLOAD_CHUNK_BYTES", default=16 * 1024**2)  # the most one PUT carries
INGEST_UPLOAD_EXPIRE_HOURS = env.int("INGEST_UPLOAD_EXPIRE_HOURS", default=48)  # unfinished uploads, then removed
THUMBNAIL_SIZE = 256

# Celery: a real worker always. The filesystem transport needs no server for a laptop run.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a task waits in the broker, for whichever worker is free
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery" / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
        # Seconds between two looks at the folder (kombu's default: 1). An idle worker then
        # uses ~0.5% of a core; a job's first task waits 25 ms on average, not 0.5 s.
        "polling_interval": 0.05,
    }
    # Nothing pushes a message to the worker: with one task reserved at a time it sat out the rest
    # of a poll after each (a 4-step item is ~0.1 s of work: make run made 8 candidates/s, the same
    # code in-process 50-90). A few reserved ahead keep its pool busy between polls; the laptop
    # has one worker, so none waits behind another's. Still acks_late; a warm shutdown (make run's
    # Ctrl-C) runs the reserved tasks first. A kill -9 loses them, as it loses the running one on
    # this transport: generating again takes the items over (bench/generation.py, issue 18).
    CELERY_WORKER_PREFETCH_MULTIPLIER = 4
    # The transport fails on missing folders; every process (web, worker, tests) may be first.
    for _folder in ("broker", "processed", "control"):
        (VAR_DIR / "celery" / _folder).mkdir(parents=True, exist_ok=True)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis gives a task taken with acks_late back to the queue only after this many seconds
    # without its ack. It must exceed the longest task (a snapshot build's 6 h limit), or a long
    # task is delivered to a second worker while the first still runs; work lost with a killed
    # worker comes back sooner through the lost-work sweep below (engine.lost_work).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7 * 3600)}
CELERY_TASK_IGNORE_RESULT = True  # status lives in the database, not in Celery results
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    "annotation-leases-expire": {"task": "annotation.leases_expire", "schedule": 30.0},
    "stats-rollups-refresh": {"task": "stats.rollups_refresh", "schedule": 60.0},
    "ingest-uploads-expire": {"task": "ingest.uploads_expire", "schedule": 3600.0},
}
# The lost-work sweep (engine.lost_work): every LOST_WORK_SWEEP_S, the work a worker took and then
# went silent on for longer than its task can (hard time limit or 3 heartbeats of TASK_HEARTBEAT_S,
# plus its retry backoff, plus LOST_WORK_MARGIN_S) is sent again; after LOST_WORK_MAX_REQUEUES
# such losses it fails with a reason.
LOST_WORK_SWEEP_S = env.float("LOST_WORK_SWEEP_S", default=60.0)
LOST_WORK_MARGIN_S = env.float("LOST_WORK_MARGIN_S", default=120.0)
LOST_WORK_MAX_REQUEUES = env.int("LOST_WORK_MAX_REQUEUES", default=3)
TASK_HEARTBEAT_S = env.float("TASK_HEARTBEAT_S", default=30.0)
# One item's candidates, hard limit (the soft one is 4/5 of it): a slow model behind the HTTP
# backend may need more; a fast one lets the sweep find a lost item sooner.
GENERATION_TIME_LIMIT_S = env.int("GENERATION_TIME_LIMIT_S", default=300)
# A worker that is alive but takes nothing while its queues hold messages for WORKER_STALL_S
# exits to be restarted (engine.worker_watchdog); 0 turns the check off.
WORKER_STALL_S = env.float("WORKER_STALL_S", default=120.0)
WORKER_STALL_CHECK_S = env.float("WORKER_STALL_CHECK_S", default=0.0)  # how often it looks; 0: min(15 s, a quarter)
CELERY_BEAT_SCHEDULE.update({
    f"{app}-lost-work-requeue": {"task": f"{app}.lost_work_requeue", "schedule": LOST_WORK_SWEEP_S}
    for app in ("rounds", "exports", "ingest")
})
CELERY_TIMEZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "engine.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies through the engine's limits (engine.jsonio: depth, NaN, U+0000).
    "DEFAULT_PARSER_CLASSES": [
        "engine.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "engine.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "engine.schema.AutoSchema",
    "EXCEPTION_HANDLER": "engine.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "3D data engine API",
    "DESCRIPTION": "Projects, ingest, generation, annotation and exports. Token auth: "
    "`Authorization: Token <key>` (or `Bearer <key>`); a browser's session works too. "
    'Errors: `{"error": {"code", "message", "details"}}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Separate request and response components: read-only fields (id, created_at) are not
    # asked of a client, and generated clients get the types they send and receive.
    "COMPONENT_SPLIT_REQUEST": True,
    # The error shape and the error statuses of every operation (engine/schema.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "engine.schema.error_responses_hook", "engine.schema.request_media_types_hook"],
    # One name per choice set where several fields share it.
    "ENUM_NAME_OVERRIDES": {"RoleEnum": "engine.models.Role", "GenerationJobStateEnum": "modelzoo.models.GenerationJob.State"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
