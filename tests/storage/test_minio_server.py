from __future__ import annotations

import boto3

from devcluster.minio import MinioServer


def test_put_get_list_roundtrip(s3_server: MinioServer, s3_bucket: str) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    body = b"quantization costs something\n"
    s3.put_object(Bucket=s3_bucket, Key="runs/r1/result.json", Body=body)

    got = s3.get_object(Bucket=s3_bucket, Key="runs/r1/result.json")["Body"].read()
    assert got == body

    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="runs/")
    assert [o["Key"] for o in listed["Contents"]] == ["runs/r1/result.json"]
    assert listed["Contents"][0]["Size"] == len(body)


def test_env_points_at_server(s3_server: MinioServer) -> None:
    env = s3_server.env()
    assert env["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint
    assert env["AWS_ACCESS_KEY_ID"] == s3_server.access_key
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
