"""Browser pages of the annotator workbench (served by Django, built by Vite)."""
from django.urls import path

from annotation import workbench

urlpatterns = [
    path("projects/<slug:slug>/annotate/", workbench.annotate, name="workbench-annotate"),
    path("projects/<slug:slug>/images/<int:image_id>/scene/", workbench.scene, name="workbench-scene"),
    path("projects/<slug:slug>/artist-queue/", workbench.artist_queue, name="workbench-artist-queue"),
]
