"""Starts a ferry process on loopback ports it picks, for the suites."""

import contextlib
import os
import signal
import subprocess
import tempfile

# Each is set on the command line: the defaults would take fixed ports, and
# the TLS ones turn on by themselves once a certificate is configured.
LISTENERS = ("admin", "aws", "amqp", "kafka", "admin-tls", "aws-tls", "amqps", "kafka-tls")


@contextlib.contextmanager
def ferry(*extra, listen=("aws",), data=None):
    """A running ferry with the `listen` listeners on free loopback ports
    (the others off), on data directory `data` (a new one if None); yields
    {listener: "host:port"} and checks a clean exit on SIGTERM."""
    binary = os.environ.get("FERRY_BIN", "target/debug/ferry")
    data = data or tempfile.mkdtemp(prefix="ferry-compat-")
    flags = []
    for name in LISTENERS:
        flags += [f"--{name}-listen", "127.0.0.1:0" if name in listen else "off"]
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data, *flags, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        addrs = {}
        for _ in listen:
            line = proc.stdout.readline().strip()
            parts = line.split()
            assert len(parts) == 3 and parts[0] == "listening", f"unexpected line: {line!r}"
            addrs[parts[1]] = parts[2]
        assert set(addrs) == set(listen), addrs
        yield addrs
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "ferry exits cleanly on SIGTERM"


def sqs_client(addrs):
    """A boto3 SQS client for a ferry's AWS listener (any key: unsigned mode)."""
    import boto3  # only the SQS suites have it

    return boto3.client(
        "sqs",
        endpoint_url="http://" + addrs["aws"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def found_in(directory, needle):
    """Whether any file under `directory` holds the bytes `needle`."""
    for root, _, files in os.walk(directory):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                if needle in fh.read():
                    return True
    return False


def tls_flags(directory):
    """A CA (trustme) and a server certificate for localhost signed by it,
    written under `directory` (the CA as ca.pem); returns (the CA, ferry's
    TLS flags)."""
    import trustme  # only the TLS tests need it

    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_pem = (os.path.join(directory, f) for f in ("cert.pem", "key.pem", "ca.pem"))
    server.cert_chain_pems[0].write_to_path(cert)
    server.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_pem)
    return ca, ["--tls-cert", cert, "--tls-key", key]
