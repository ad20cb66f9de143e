"""Browser pages of the annotator workbench (served by Django, built by Vite)."""
urlpatterns: list = []
