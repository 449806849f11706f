"""Access keys that belong to users: each SQS action is checked against the
user's permissions on the queue (write: send; read: receive and settle;
configure: create, delete, change), and a refusal is SQS's AccessDenied."""

import boto3
import botocore.exceptions
import pytest
from ferryproc import ferry

CONFIG = """
[[users]]
name = "admin"
password = "unused"
access-keys = [{ id = "AKIDADMIN", secret = "admin-secret" }]

[[users]]
name = "producer"
password = "unused"
access-keys = [{ id = "AKIDPRODUCER", secret = "producer-secret" }]

[[users]]
name = "consumer"
password = "unused"
access-keys = [{ id = "AKIDCONSUMER", secret = "consumer-secret" }]

[[permissions]]
user = "admin"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"

[[permissions]]
user = "producer"
vhost = "/"
configure = ""
write = "^orders$"
read = ""

[[permissions]]
user = "consumer"
vhost = "/"
configure = ""
write = ""
read = "^orders$"
"""


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    config = tmp_path_factory.mktemp("users") / "ferry.toml"
    config.write_text(CONFIG)
    with ferry("--config", str(config)) as addrs:
        yield "http://" + addrs["aws"]


def client(endpoint, key, secret):
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
    )


def denied(call, code="AccessDenied"):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] in (code, code + "Exception"), e.value.response
    return e.value


def test_each_user_does_only_what_its_permissions_allow(endpoint):
    admin = client(endpoint, "AKIDADMIN", "admin-secret")
    producer = client(endpoint, "AKIDPRODUCER", "producer-secret")
    consumer = client(endpoint, "AKIDCONSUMER", "consumer-secret")
    url = admin.create_queue(QueueName="orders")["QueueUrl"]
    admin.create_queue(QueueName="payroll")

    producer.send_message(QueueUrl=url, MessageBody="order 1")
    err = denied(lambda: producer.receive_message(QueueUrl=url))
    assert "producer" in err.response["Error"]["Message"]
    denied(lambda: producer.create_queue(QueueName="mine"))
    denied(lambda: producer.send_message(
        QueueUrl=url.replace("orders", "payroll"), MessageBody="x"))

    got = consumer.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert got[0]["Body"] == "order 1"
    consumer.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    denied(lambda: consumer.send_message(QueueUrl=url, MessageBody="x"))
    denied(lambda: consumer.delete_queue(QueueUrl=url))
    denied(lambda: consumer.set_queue_attributes(
        QueueUrl=url, Attributes={"VisibilityTimeout": "5"}))

    # Listings show each user the queues it has a permission on.
    listed = consumer.list_queues().get("QueueUrls", [])
    assert [u.rsplit("/", 1)[1] for u in listed] == ["orders"], listed
    assert len(admin.list_queues()["QueueUrls"]) == 2


def test_unknown_keys_and_wrong_secrets_are_refused(endpoint):
    denied(lambda: client(endpoint, "AKIDNOBODY", "x").list_queues(), "InvalidClientTokenId")
    denied(lambda: client(endpoint, "AKIDADMIN", "wrong").list_queues(), "SignatureDoesNotMatch")


def test_keys_made_through_the_api_and_removing_the_last_one(tmp_path):
    """A key given through the admin API signs requests at once; deleting
    its user does not open the broker to unsigned requests again."""
    import base64
    import json
    import urllib.request

    with ferry(listen=("aws", "admin"), data=str(tmp_path / "data")) as addrs:
        def admin(method, path, body=None):
            req = urllib.request.Request(
                "http://" + addrs["admin"] + path, method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={
                    "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                    "Content-Type": "application/json",
                },
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status

        endpoint = "http://" + addrs["aws"]
        assert client(endpoint, "anything", "x").list_queues() is not None, "open at first"
        assert admin("PUT", "/api/users/svc", {
            "password": "pw", "access_keys": [{"id": "AKIDSVC", "secret": "svc-secret"}],
        }) == 201
        assert admin("PUT", "/api/permissions/%2F/svc",
                     {"configure": ".*", "write": ".*", "read": ".*"}) == 201
        client(endpoint, "AKIDSVC", "svc-secret").create_queue(QueueName="svc")
        denied(lambda: client(endpoint, "anything", "x").list_queues(), "InvalidClientTokenId")
        # A password change through the API keeps the keys.
        assert admin("PUT", "/api/users/svc", {"password": "new"}) == 200
        client(endpoint, "AKIDSVC", "svc-secret").list_queues()
        assert admin("DELETE", "/api/users/svc") == 200
        denied(lambda: client(endpoint, "anything", "x").list_queues(), "InvalidClientTokenId")
