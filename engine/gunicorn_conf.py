"""gunicorn settings for the web app (Docker's web service and bench/annotation_queue.py use it):

    gunicorn engine.wsgi:application -c engine/gunicorn_conf.py

Threaded workers (gthread), WEB_WORKERS processes x WEB_THREADS threads: by default one worker
per core and 3 threads each. bench/annotation_queue.py measured 2 x 3 on two cores against 2 x 2, 3 x 2,
3 x 1, 4 x 1 and 6 x 1: the most judgements per second and the lowest CPU per request (a process
per request in flight pays its own Python; threads overlap the database waits).
"""
import multiprocessing
import os

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("WEB_THREADS", 3))
timeout = 120
keepalive = 60


def post_worker_init(worker):
    """Load the URLconf now, not at the first request (through engine.stats it imports scipy:
    about 1.7 s of CPU), then move everything made so far out of the garbage collector's sight
    (a full collection took 5 ms instead of 70 ms)."""
    # Here: gunicorn reads this file before Django is set up (in each worker, after the fork).
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns
    gc.freeze()
