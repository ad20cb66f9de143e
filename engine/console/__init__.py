"""The lead's and the trainer's console: browser pages over the existing services and selectors.

One module per area (`projects`, `imports`, `rounds`, `review`, `snapshots`, `checkpoints`), each
with its views and its `urlpatterns`; `urls.py` mounts them under /console/. Views stay thin: the
permission checks are the selectors' (`engine.selectors.project_get_for_user` and friends), the
writes the services'. Pages are server-rendered in the dashboard's look; what moves (uploads,
forms that answer field by field, live progress) is a Vite module in `frontend/src/console/`
talking to the JSON API with the session and the CSRF token.
"""
