"""The Celery app as the worker-kill test runs it: the project's app, with a short Redis
visibility timeout so that a task whose worker was SIGKILLed is redelivered within seconds
(production keeps Redis' default of an hour, longer than any task)."""
from engine.celery import app

app.conf.broker_transport_options = {"visibility_timeout": 5}

__all__ = ["app"]
