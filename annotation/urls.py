"""API routes of the annotation app, under /api/v1/."""
urlpatterns: list = []
