"""Chunked, resumable uploads and the import job they start (engine.ingest.uploads, engine.ingest.apis)."""
from __future__ import annotations

import io
import json
import threading
import zipfile

import numpy as np
import pytest
from django.db import connection

from engine.ingest.uploads import upload_dir
from engine.models import Image, IngestJob, ObjectMask, Role, Upload
from tests.engine import builders
from tests.engine.factories import ProjectFactory
from tests.engine.imports import import_job_run

pytestmark = pytest.mark.django_db


def folder_zip(tmp_path, n_images=3) -> bytes:
    root = builders.write_folder(tmp_path / "src", n_images=n_images)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                archive.write(p, str(p.relative_to(root)))
    return buf.getvalue()


class Uploader:
    """A client of the upload API, as the console's page is."""

    def __init__(self, client, project):
        self.client, self.base = client, f"/api/v1/projects/{project.slug}/uploads/"

    def create(self, files: dict[str, bytes], **extra):
        return self.client.post(self.base, {"files": [{"path": p, "size": len(b)} for p, b in files.items()],
                                            **extra}, format="json")

    def put(self, upload_id, index, data: bytes, start: int, size: int, header=None):
        header = header if header is not None else f"bytes {start}-{start + len(data) - 1}/{size}"
        return self.client.generic("PUT", f"{self.base}{upload_id}/files/{index}", data,
                                   content_type="application/octet-stream", HTTP_CONTENT_RANGE=header)

    def send(self, upload_id, index, data: bytes, chunk: int):
        for start in range(0, len(data), chunk):
            response = self.put(upload_id, index, data[start:start + chunk], start, len(data))
            assert response.status_code == 200, response.content
        return response

    def complete(self, upload_id):
        return self.client.post(f"{self.base}{upload_id}/complete/")


@pytest.fixture
def lead(member):
    return member(Role.LEAD)


@pytest.fixture
def uploader(api, lead, project):
    return Uploader(api(lead), project)


def test_a_zip_in_chunks_is_imported_by_a_job_with_a_report_per_file(uploader, api, lead, project, tmp_path):
    data = folder_zip(tmp_path)
    created = uploader.create({"photos.zip": data})
    assert created.status_code == 201, created.content
    upload = created.json()
    assert upload["files"] == [{"index": 0, "path": "photos.zip", "size": len(data), "received": 0}]
    last = uploader.send(upload["id"], 0, data, chunk=1000)
    assert last.json()["received"] == len(data)
    response = uploader.complete(upload["id"])
    assert response.status_code == 202 and response.json()["state"] == "preparing"
    assert response.json()["source_name"] == "photos.zip" and Image.objects.count() == 0
    assert uploader.complete(upload["id"]).json()["id"] == response.json()["id"]  # completing again: the same job
    job = import_job_run(response.json()["id"])
    assert job.state == "done" and Image.objects.filter(project=project).count() == 3
    assert not upload_dir(upload["id"]).exists()  # staged files removed once imported
    client = api(lead)
    shown = client.get(f"/api/v1/projects/{project.slug}/imports/{job.pk}/").json()
    assert shown["report"] == {"added": 3, "duplicate": 0, "refused": 0}
    assert shown["progress"]["total"] == 3 and shown["progress"]["done"] == 3
    entries = client.get(f"/api/v1/projects/{project.slug}/imports/{job.pk}/entries/").json()
    assert [e["name"] for e in entries["results"]] == ["images/photo0.png", "images/photo1.png", "images/photo2.png"]
    assert all(e["outcome"] == "added" and e["masks_added"] == 2 and e["image"] for e in entries["results"])
    listed = client.get(f"/api/v1/projects/{project.slug}/imports/").json()
    assert [j["id"] for j in listed["results"]] == [job.pk]


def test_a_chunk_out_of_order_gets_409_with_the_offset_to_resume_from(uploader, tmp_path):
    data = folder_zip(tmp_path)
    upload = uploader.create({"a.zip": data}).json()
    assert uploader.put(upload["id"], 0, data[:500], 0, len(data)).status_code == 200
    skipped = uploader.put(upload["id"], 0, data[1000:1500], 1000, len(data))
    assert skipped.status_code == 409
    error = skipped.json()["error"]
    assert error["code"] == "offset_mismatch" and error["details"] == {"expected_offset": 500}
    # A chunk sent twice (its answer was lost): 409, and the file is unchanged.
    again = uploader.put(upload["id"], 0, data[:500], 0, len(data))
    assert again.status_code == 409 and again.json()["error"]["details"]["expected_offset"] == 500
    # Resume as a client does after a reload: ask where the file stands, send from there.
    state = uploader.client.get(f"{uploader.base}{upload['id']}/").json()
    offset = state["files"][0]["received"]
    for start in range(offset, len(data), 700):
        assert uploader.put(upload["id"], 0, data[start:start + 700], start, len(data)).status_code == 200
    assert uploader.complete(upload["id"]).status_code == 202
    staged = upload_dir(upload["id"]) / "files" / "a.zip"
    assert staged.read_bytes() == data


@pytest.mark.parametrize("header, words", [
    ("", "A chunk names its place"),
    ("bytes 0-9/100", "the body has 5"),
    ("bytes=0-4/100", "A chunk names its place"),
    ("bytes 0-4/99", "declared with"),
])
def test_a_chunk_with_a_wrong_content_range_is_refused(uploader, header, words):
    upload = uploader.create({"a.zip": b"x" * 100}).json()
    response = uploader.put(upload["id"], 0, b"12345", 0, 100, header=header)
    assert response.status_code == 400 and words in response.json()["error"]["message"]
    assert Upload.objects.get().files.get().received == 0


def test_a_chunk_past_the_end_is_refused_and_nothing_is_written(uploader):
    upload = uploader.create({"a.zip": b"x" * 10}).json()
    response = uploader.put(upload["id"], 0, b"x" * 12, 0, 10, header="bytes 0-11/10")
    assert response.status_code == 400
    assert not (upload_dir(upload["id"]) / "files" / "a.zip").exists()


def test_too_large_an_upload_or_chunk_is_refused_with_413(uploader, settings):
    settings.INGEST_MAX_UPLOAD_BYTES = 1000
    response = uploader.client.post(uploader.base, {"files": [{"path": "big.zip", "size": 2000}]}, format="json")
    assert response.status_code == 413 and "above the limit of 1,000" in response.json()["error"]["message"]
    assert not Upload.objects.exists()
    settings.INGEST_UPLOAD_CHUNK_BYTES = 100
    upload = uploader.create({"a.zip": b"x" * 500}).json()
    response = uploader.put(upload["id"], 0, b"x" * 200, 0, 500)
    assert response.status_code == 413 and "at most 100 bytes" in response.json()["error"]["message"]


@pytest.mark.parametrize("files, code", [
    ({"notes.txt": b"x"}, "unknown_file_type"),
    ({"a.zip": b"x", "b.png": b"y"}, "zip_not_alone"),
    ({"../a.png": b"x"}, "bad_path"),
    ({"/etc/a.png": b"x"}, "bad_path"),
])
def test_files_ingest_cannot_read_are_refused_before_a_byte_is_sent(uploader, files, code):
    response = uploader.create(files)
    assert response.status_code == 400 and response.json()["error"]["code"] == code, response.content


def test_completing_before_every_byte_arrived_is_refused(uploader):
    upload = uploader.create({"a.png": b"x" * 10, "a_mask.png": b"y" * 10}).json()
    uploader.put(upload["id"], 0, b"x" * 10, 0, 10)
    response = uploader.complete(upload["id"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "upload_incomplete"
    assert "'a_mask.png' has 0 of its 10 bytes" in response.json()["error"]["message"]
    assert not IngestJob.objects.exists()


def test_a_corrupt_zip_is_refused_at_completion_and_discarded(uploader):
    data = b"PK\x03\x04" + b"\x00" * 200
    upload = uploader.create({"a.zip": data}).json()
    uploader.send(upload["id"], 0, data, chunk=100)
    response = uploader.complete(upload["id"])
    assert response.status_code == 400 and "not a valid zip" in response.json()["error"]["message"]
    assert not IngestJob.objects.exists() and Upload.objects.get().state == "cancelled"
    assert not upload_dir(upload["id"]).exists()


def test_a_zip_of_an_unknown_layout_is_refused_at_completion(uploader):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    upload = uploader.create({"a.zip": buf.getvalue()}).json()
    uploader.send(upload["id"], 0, buf.getvalue(), chunk=1000)
    response = uploader.complete(upload["id"])
    assert response.status_code == 400 and "Cannot tell the zip's format" in response.json()["error"]["message"]


def test_loose_photos_with_png_masks_and_a_depth_map_are_laid_out_as_a_folder(uploader, project):
    depth = io.BytesIO()
    np.save(depth, np.full((48, 64), 1.5, dtype=np.float32))
    files = {
        "cup.jpg": builders.photo_bytes(seed=1, fmt="JPEG"),
        "cup_mask.png": builders.mask_png(builders.box_mask()),
        "cup_handle.png": builders.mask_png(builders.box_mask(box=(30, 5, 50, 20))),
        "cup.npy": depth.getvalue(),
        "bowl.png": builders.photo_bytes(seed=2),
        "bowl_1.png": builders.mask_png(builders.box_mask(box=(2, 2, 12, 12))),
        "plate.png": builders.photo_bytes(seed=3),  # a photo without masks: refused, named
    }
    upload = uploader.create(files).json()
    for f in upload["files"]:
        uploader.send(upload["id"], f["index"], files[f["path"]], chunk=4096)
    job = import_job_run(uploader.complete(upload["id"]).json()["id"])
    assert job.state == "done" and job.format == "folder"
    cup = Image.objects.get(project=project, source_name="images/cup.jpg")
    assert sorted(ObjectMask.objects.filter(image=cup).values_list("label", flat=True)) == ["handle", "mask"]
    assert cup.depth
    bowl = Image.objects.get(project=project, source_name="images/bowl.png")
    assert list(ObjectMask.objects.filter(image=bowl).values_list("label", flat=True)) == ["object"]
    refused = job.entries.get(outcome="refused")
    assert refused.name == "images/plate.png" and "no masks" in refused.reason


def test_an_sa1b_document_with_its_photo_as_loose_files(uploader, project):
    doc = builders.sa1b_dict("sa_1")
    files = {"sa_1.json": json.dumps(doc).encode(), "sa_1.jpg": builders.photo_bytes(fmt="JPEG")}
    upload = uploader.create(files).json()
    for f in upload["files"]:
        uploader.send(upload["id"], f["index"], files[f["path"]], chunk=4096)
    job = import_job_run(uploader.complete(upload["id"]).json()["id"])
    assert job.state == "done" and job.format == "sa1b", job.entries.values()
    assert Image.objects.filter(project=project).count() == 1


def test_a_cancelled_upload_takes_no_more_chunks_and_its_files_are_gone(uploader):
    upload = uploader.create({"a.zip": b"x" * 10}).json()
    uploader.put(upload["id"], 0, b"x" * 5, 0, 10)
    assert uploader.client.delete(f"{uploader.base}{upload['id']}/").status_code == 204
    assert not upload_dir(upload["id"]).exists()
    response = uploader.put(upload["id"], 0, b"x" * 5, 5, 10)
    assert response.status_code == 409 and response.json()["error"]["code"] == "upload_closed"


def test_uploads_and_imports_need_the_lead_role_in_the_project(api, member, project, uploader):
    upload = uploader.create({"a.zip": b"x" * 10}).json()
    annotator = api(member(Role.ANNOTATOR))
    assert annotator.post(f"/api/v1/projects/{project.slug}/uploads/", {"files": []}, format="json").status_code == 403
    assert annotator.get(f"/api/v1/projects/{project.slug}/imports/").status_code == 403
    other = ProjectFactory()
    lead_elsewhere = member(Role.LEAD)
    from engine.models import Membership

    Membership.objects.create(project=other, user=lead_elsewhere, role=Role.LEAD)
    response = api(lead_elsewhere).get(f"/api/v1/projects/{other.slug}/uploads/{upload['id']}/")
    assert response.status_code == 404  # an upload of another project is not found through this one


def test_a_failed_batch_is_retried_from_the_console(uploader, api, lead, project, tmp_path, monkeypatch):
    from engine.ingest import jobs

    data = folder_zip(tmp_path, n_images=2)
    upload = uploader.create({"a.zip": data}).json()
    uploader.send(upload["id"], 0, data, chunk=10_000)
    job_id = uploader.complete(upload["id"]).json()["id"]
    jobs.ingest_job_prepare_run(job_id=job_id)
    batch = IngestJob.objects.get(pk=job_id).batches.get()
    jobs.ingest_batch_fail(batch_id=batch.pk, reason="OSError: the disk went away")
    client = api(lead)
    shown = client.get(f"/api/v1/projects/{project.slug}/imports/{job_id}/").json()
    assert shown["state"] == "failed" and shown["progress"]["batches_failed"] == 1
    assert upload_dir(upload["id"]).exists()  # kept for the retry
    response = client.post(f"/api/v1/projects/{project.slug}/imports/{job_id}/retry/")
    assert response.status_code == 202 and response.json()["state"] == "running"
    job = import_job_run(job_id)
    assert job.state == "done" and Image.objects.filter(project=project).count() == 2
    assert client.post(f"/api/v1/projects/{project.slug}/imports/{job_id}/retry/").status_code == 409


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_chunks_at_the_same_offset_at_once_one_is_taken(api, member, project):
    lead = member(Role.LEAD)
    upload = Uploader(api(lead), project).create({"a.zip": b"x" * 20}).json()
    answers = []

    def send(payload):
        try:
            answers.append(Uploader(api(lead), project).put(upload["id"], 0, payload, 0, 20).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(bytes([65 + i]) * 10,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409, 409, 409]
    assert Upload.objects.get().files.get().received == 10


def test_an_upload_left_unfinished_expires_and_its_files_go(uploader, settings):
    from datetime import timedelta

    from django.utils import timezone

    from engine.ingest.uploads import uploads_expire

    old = uploader.create({"a.zip": b"x" * 10}).json()
    uploader.put(old["id"], 0, b"x" * 5, 0, 10)
    fresh = uploader.create({"b.zip": b"x" * 10}).json()
    Upload.objects.filter(pk=old["id"]).update(created_at=timezone.now() - timedelta(hours=49))
    assert uploads_expire() == 1
    assert Upload.objects.get(pk=old["id"]).state == "cancelled" and not upload_dir(old["id"]).exists()
    assert Upload.objects.get(pk=fresh["id"]).state == "receiving" and upload_dir(fresh["id"]).exists()


def test_the_imports_list_costs_the_same_queries_for_many_jobs(api, lead, project, tmp_path,
                                                              django_assert_max_num_queries):
    client = api(lead)
    for i in range(6):
        data = folder_zip(tmp_path / str(i), n_images=1)
        uploader = Uploader(client, project)
        upload = uploader.create({f"{i}.zip": data}).json()
        uploader.send(upload["id"], 0, data, chunk=100_000)
        import_job_run(uploader.complete(upload["id"]).json()["id"])
    with django_assert_max_num_queries(8):
        listed = client.get(f"/api/v1/projects/{project.slug}/imports/").json()
    assert listed["count"] == 6
    assert [j["report"] for j in listed["results"]] == [{"added": 0, "duplicate": 1, "refused": 0}] * 5 + [
        {"added": 1, "duplicate": 0, "refused": 0}]
    assert all(j["progress"]["total"] == 1 and j["progress"]["done"] == 1 for j in listed["results"])
    with django_assert_max_num_queries(8):
        assert client.get(f"/console/projects/{project.slug}/import/").status_code in (200, 302)
