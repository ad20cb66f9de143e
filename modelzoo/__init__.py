"""Model zoo: generator backends, the built-in image-to-3D model, meshing, metrics.

Plain modules here import neither Django nor the database; the Django glue
(checkpoint registry, generation jobs, Celery tasks) lives in `models.py`,
`services.py`, `selectors.py`, `apis.py` and `tasks.py` beside them.
"""
