"""API routes of the modelzoo app, under /api/v1/."""
urlpatterns: list = []
