"""pika over TLS (AMQPS): a CA made by trustme, a password login, and a
client certificate that logs in with SASL EXTERNAL as its common name."""

import ssl

import pika
import pytest
import trustme
from ferryproc import ferry, tls_flags


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(the CA, ferry's AMQPS address) with client certificates optional."""
    d = tmp_path_factory.mktemp("tls")
    ca, flags = tls_flags(str(d))
    with ferry(
        *flags, "--tls-client-ca", str(d / "ca.pem"), "--amqp-sasl-external",
        listen=("amqps",),
    ) as addrs:
        host, port = addrs["amqps"].rsplit(":", 1)
        yield ca, int(port)


def context(ca, client=None):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    return ctx


def roundtrip(params, name):
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(name)
        ch.basic_publish("", name, b"over tls", pika.BasicProperties(delivery_mode=2))
        _, _, body = ch.basic_get(name, auto_ack=True)
        return body
    finally:
        conn.close()


def test_password_login_over_tls(tls, name):
    ca, port = tls
    params = pika.ConnectionParameters(
        host="localhost", port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(context(ca), "localhost"),
    )
    assert roundtrip(params, name) == b"over tls"


def test_client_certificate_logs_in_with_external(tls, name):
    ca, port = tls
    client = ca.issue_cert("guest", common_name="guest")  # the common name is the user
    params = pika.ConnectionParameters(
        host="localhost", port=port,
        credentials=pika.credentials.ExternalCredentials(),
        ssl_options=pika.SSLOptions(context(ca, client), "localhost"),
    )
    assert roundtrip(params, name) == b"over tls"


def test_a_certificate_for_an_unknown_user_is_refused(tls):
    ca, port = tls
    client = ca.issue_cert("mallory", common_name="mallory")
    params = pika.ConnectionParameters(
        host="localhost", port=port,
        credentials=pika.credentials.ExternalCredentials(),
        ssl_options=pika.SSLOptions(context(ca, client), "localhost"),
        connection_attempts=1,
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)


def test_the_server_certificate_is_checked(tls):
    _, port = tls
    stranger = trustme.CA()
    params = pika.ConnectionParameters(
        host="localhost", port=port,
        ssl_options=pika.SSLOptions(context(stranger), "localhost"),
        connection_attempts=1,
    )
    # pika surfaces the failed handshake as the ssl module's error.
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError)):
        pika.BlockingConnection(params)
