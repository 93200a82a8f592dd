// Reads a topic with the official Java client (independent of the bridge's librdkafka) and
// prints every record as one JSON line; compiled and run by tests/kafka/broker.sh:
//
//   tests/kafka/broker.sh dump BOOTSTRAP TOPIC
//
// Reads every partition from the beginning up to the end offsets taken at start (so it
// terminates), in offset order per partition. Each line:
//   {"partition":P,"offset":O,"key":"..."|null,"headers":[["name","value"],...],
//    "value_b64":"..."}
// Header values and the key are printed as UTF-8 text; the value as base64.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class TopicDump {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: TopicDump BOOTSTRAP TOPIC");
            System.exit(64);
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        StringBuilder out = new StringBuilder();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(args[1], Duration.ofSeconds(30))) {
                partitions.add(new TopicPartition(info.topic(), info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> end = new HashMap<>(consumer.endOffsets(partitions, Duration.ofSeconds(30)));
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (!done(consumer, end)) {
                if (System.nanoTime() > deadline) {
                    System.err.println("TopicDump: timed out before the end offsets " + end);
                    System.exit(1);
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.offset() >= end.get(new TopicPartition(r.topic(), r.partition()))) {
                        continue;
                    }
                    out.append("{\"partition\":").append(r.partition())
                            .append(",\"offset\":").append(r.offset())
                            .append(",\"key\":").append(r.key() == null ? "null" : quote(utf8(r.key())))
                            .append(",\"headers\":[");
                    boolean first = true;
                    for (Header h : r.headers()) {
                        if (!first) {
                            out.append(',');
                        }
                        first = false;
                        out.append('[').append(quote(h.key())).append(',')
                                .append(h.value() == null ? "null" : quote(utf8(h.value()))).append(']');
                    }
                    out.append("],\"value_b64\":")
                            .append(r.value() == null ? "null" : quote(Base64.getEncoder().encodeToString(r.value())))
                            .append("}\n");
                }
            }
        }
        System.out.print(out);
        System.out.flush();
    }

    private static boolean done(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    private static String utf8(byte[] bytes) {
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
