"""The peer of bench/kafka.sh: a bare librdkafka consumer (confluent-kafka's
Consumer.consume in batches) that reads every partition of the given topics
from the beginning to the high-water mark seen at start, without decoding.
It stops the way pos-etl does: past the start mark *and* at end-of-partition,
because Tansu under-reports the mark."""

import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition


def main(brokers: str, topics: list[str]) -> None:
    started = time.monotonic()
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "bench-peer",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    metadata = consumer.list_topics(timeout=30)
    pending = {}
    assignment = []
    for topic in topics:
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                pending[(topic, partition)] = [low, high]
                assignment.append(TopicPartition(topic, partition, low))
    consumer.assign(assignment)
    messages = 0
    payload_bytes = 0
    while pending:
        for message in consumer.consume(num_messages=10000, timeout=1.0):
            key = (message.topic(), message.partition())
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    if key in pending and pending[key][0] >= pending[key][1]:
                        del pending[key]
                    continue
                raise RuntimeError(message.error())
            messages += 1
            payload_bytes += len(message.value())
            if key in pending:
                pending[key][0] = message.offset() + 1
    consumer.close()
    print(f"peer: {messages} messages, {payload_bytes} bytes in {time.monotonic() - started:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","))
