"""The S3 path against a real S3-compatible HTTP endpoint on loopback (moto's server)."""
from __future__ import annotations

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from engine.models import Role
from tests.engine import builders
from tests.engine.test_api import upload

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_storage(settings, s3_endpoint):
    """Point default storage at a fresh bucket on the endpoint, exactly as the S3_* variables do."""
    bucket = "engine-test"
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_ACCESS_KEY_ID = "test"
    settings.AWS_SECRET_ACCESS_KEY = "test"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_S3_ADDRESSING_STYLE = "path"
    settings.AWS_S3_FILE_OVERWRITE = True
    settings.AWS_DEFAULT_ACL = None
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    # Assigning settings.STORAGES fires Django's setting_changed receiver, which drops the
    # cached default storage: the next use builds an S3Storage from the settings above.
    yield client, bucket


def test_upload_lands_in_the_bucket_and_is_served_by_presigned_url(api, member, project, s3_storage):
    client, bucket = s3_storage
    lead = member(Role.LEAD)
    photo = builders.photo_bytes(seed=7)
    created = upload(api(lead), project, image=photo)
    assert created.status_code == 201, created.content
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    sha = created.json()["sha256"]
    assert f"images/{sha[:2]}/{sha}.png" in keys and f"thumbs/{sha[:2]}/{sha}.jpg" in keys
    assert client.get_object(Bucket=bucket, Key=f"images/{sha[:2]}/{sha}.png")["Body"].read() == photo

    response = api(lead).get(f"/api/v1/projects/{project.slug}/images/{created.json()['id']}/file")
    assert response.status_code == 302 and "Signature" in response["Location"]
    assert requests.get(response["Location"], timeout=10).content == photo


def test_reupload_writes_no_second_object(api, member, project, s3_storage):
    client, bucket = s3_storage
    lead = member(Role.LEAD)
    upload(api(lead), project, image=builders.photo_bytes(seed=8))
    before = client.list_objects_v2(Bucket=bucket)["KeyCount"]
    assert upload(api(lead), project, image=builders.photo_bytes(seed=8)).status_code == 200
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == before
