#!/usr/bin/env python3
"""Read a topic of the pipeline with Confluent's own Python client.

Reads every partition of --topic from its beginning up to its end as of the
start (committed records only), decodes each value with Confluent's
AvroDeserializer (which fetches the writer schema by id from --registry), and
prints one JSON line per record:

  {"topic": ..., "partition": ..., "offset": ..., "key": ..., "value": ...}

key is the key as UTF-8 text (null for no key); a key that is not UTF-8 is
given as "key_base64" instead, with key null. In values, bytes and fixed are
base64 strings, NaN and infinities are the strings "NaN", "Infinity" and
"-Infinity", and unions are their plain value (no type wrapper).

Any error ends the script with a message on stderr and exit status 1.
Used by testcontainers/e2e/peers_test.go; the venv comes from
ops/peers-setup.sh.
"""

import argparse
import base64
import datetime
import decimal
import json
import logging
import math
import sys
import time
import uuid


def fail(msg):
    print("read_topic.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
except ImportError as e:  # not the peers venv
    fail("cannot import confluent_kafka (%s): run with the python that ops/peers-setup.sh prints" % e)


def json_safe(v):
    """Turns a decoded Avro value into plain JSON values."""
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (decimal.Decimal, uuid.UUID)):
        return str(v)
    raise ValueError("value of type %s has no JSON form" % type(v).__name__)


class OncePerMessage(logging.Filter):
    """Lets each distinct librdkafka log line through once: a broker that is
    down is otherwise reported every reconnect backoff."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def kafka_logger():
    log = logging.getLogger("rdkafka")
    log.propagate = False
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("read_topic.py: librdkafka: %(message)s"))
    h.addFilter(OncePerMessage())
    log.addHandler(h)
    log.setLevel(logging.WARNING)
    return log


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,host:port]")
    ap.add_argument("--registry", required=True, help="Schema Registry URL")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to reach the end of every partition (default 60)")
    args = ap.parse_args()

    errors = []
    deadline = time.monotonic() + args.timeout

    def remaining():
        return max(0.1, deadline - time.monotonic())

    def on_error(err):
        errors.append(err)

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": "rdv-peers-read-topic-" + uuid.uuid4().hex,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "error_cb": on_error,
        # Warnings and errors only: librdkafka's informational lines (such
        # as telemetry) would end up in the test's log.
        "log_level": 4,
    }, logger=kafka_logger())
    try:
        deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
        ctx = SerializationContext(args.topic, MessageField.VALUE)

        md = consumer.list_topics(args.topic, timeout=remaining())
        tmd = md.topics.get(args.topic)
        if tmd is None:
            fail("topic %s: no metadata from %s" % (args.topic, args.brokers))
        if tmd.error is not None:
            fail("topic %s: %s" % (args.topic, tmd.error.str()))
        partitions = sorted(tmd.partitions)
        if not partitions:
            fail("topic %s has no partitions" % args.topic)

        # Where each partition ends now. With read_committed the consumer
        # stops at the last stable offset, and the last offsets of a
        # transactional topic are commit markers it never delivers: a
        # partition is done at its end-of-partition event, once that is at
        # or past the end read here.
        ends = {}
        assign = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(args.topic, p), timeout=remaining(), cached=False)
            ends[p] = high
            if high > low:
                assign.append(TopicPartition(args.topic, p, low))
        pending = {tp.partition for tp in assign}
        if assign:
            consumer.assign(assign)

        out = sys.stdout
        while pending:
            if time.monotonic() > deadline:
                fail("topic %s: partitions %s not read to their end (%s) within %.0fs%s" % (
                    args.topic, sorted(pending), {p: ends[p] for p in sorted(pending)},
                    args.timeout, "; last client error: %s" % errors[-1].str() if errors else ""))
            fatal = [e for e in errors if e.fatal()]
            if fatal:
                fail("kafka client: %s" % fatal[0].str())
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= ends[msg.partition()]:
                        pending.discard(msg.partition())
                    continue
                fail("topic %s partition %s: %s" % (msg.topic(), msg.partition(), err.str()))
            p, off = msg.partition(), msg.offset()
            if off >= ends[p]:
                # Past the end taken at the start: not this read's records.
                pending.discard(p)
                continue
            try:
                value = deserialize(msg.value(), ctx)
            except Exception as e:
                fail("topic %s partition %d offset %d: Confluent's AvroDeserializer cannot decode the value: %s: %s" % (
                    args.topic, p, off, type(e).__name__, e))
            key = msg.key()
            rec = {"topic": msg.topic(), "partition": p, "offset": off, "key": None}
            if key is not None:
                try:
                    rec["key"] = key.decode("utf-8")
                except UnicodeDecodeError:
                    rec["key_base64"] = base64.b64encode(key).decode("ascii")
            try:
                rec["value"] = json_safe(value)
                line = json.dumps(rec, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
            except ValueError as e:
                fail("topic %s partition %d offset %d: %s" % (args.topic, p, off, e))
            out.write(line + "\n")
            if off + 1 >= ends[p]:
                pending.discard(p)
        out.flush()
    except KafkaException as e:
        fail("kafka client: %s" % e)
    finally:
        consumer.close()


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(1)
    except Exception as e:
        fail("%s: %s" % (type(e).__name__, e))
