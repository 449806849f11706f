"""kcat (Debian's, librdkafka as Debian ships it) against ferry: metadata,
produce, a balanced consumer group, resume after a restart."""

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None and not __import__("os").environ.get("CI"),
                                reason="kcat is not installed (CI installs it)")


def kcat(*args, stdin=None):
    done = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_metadata_produce_group_restart(broker, name):
    # Produce creates the topic (auto-creation is on by default).
    lines = "".join(f"k{i}:v{i}\n" for i in range(12))
    kcat("-b", broker.addr, "-P", "-t", name, "-K:", "-X", "acks=all", stdin=lines.encode())
    meta = json.loads(kcat("-b", broker.addr, "-L", "-J", "-t", name))
    [topic] = meta["topics"]
    assert topic["topic"] == name and len(topic["partitions"]) == 1
    assert [b["name"] for b in meta["brokers"]] == [broker.addr]

    group = ["-b", broker.addr, "-G", name, "-X", "auto.offset.reset=earliest", "-f", "%k=%s\\n", "-q"]
    out = kcat(*group, "-c", "12", name)
    assert out.splitlines() == [f"k{i}=v{i}" for i in range(12)]

    broker.restart()
    kcat("-b", broker.addr, "-P", "-t", name, "-K:", stdin=b"x:after1\ny:after2\n")
    group[1] = broker.addr
    out = kcat(*group, "-c", "2", name)
    # The group's commits survived: it resumes after what it had read.
    assert out.splitlines() == ["x=after1", "y=after2"]
