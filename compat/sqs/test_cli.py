"""The AWS CLI against ferry (run where the CLI is installed)."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

# .ci/run installs the CLI into the JSON suite's virtualenv and asks for it
# there; other runs skip it rather than pick up whatever `aws` is on PATH.
pytestmark = pytest.mark.skipif(
    os.environ.get("CLI_SUITE") != "1" or shutil.which("aws") is None,
    reason="the AWS CLI suite runs where .ci/run installed the CLI",
)


def aws(endpoint, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run(
        ["aws", "--endpoint-url", endpoint, "--output", "json", "sqs", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(out) if out.strip() else {}


def test_cli_send_receive_delete(endpoint):
    n = f"cli-{uuid.uuid4().hex[:8]}"
    url = aws(endpoint, "create-queue", "--queue-name", n)["QueueUrl"]
    aws(endpoint, "send-message", "--queue-url", url, "--message-body", "from the cli")
    got = aws(endpoint, "receive-message", "--queue-url", url, "--wait-time-seconds", "1")["Messages"][0]
    assert got["Body"] == "from the cli"
    aws(endpoint, "delete-message", "--queue-url", url, "--receipt-handle", got["ReceiptHandle"])
    assert url in aws(endpoint, "list-queues")["QueueUrls"]
    aws(endpoint, "delete-queue", "--queue-url", url)
