// Helper for tests/kafka/broker.sh, compiled by it with javac against kafka-clients.
//
//   java -cp CLASSES:JARS/* KafkaCheck ready BOOTSTRAP TIMEOUT_SECONDS [BROKER_PID]
//       Polls the broker with AdminClient (describeCluster + listTopics) until it answers,
//       the timeout passes (exit 1) or the broker process is gone (exit 2).
//   java -cp CLASSES:JARS/* KafkaCheck smoke BOOTSTRAP
//       Creates a topic, produces keyed records, consumes them back with a classic and a
//       KIP-848 ("consumer" protocol) group, commits, deletes the topic. Exit 0 when all
//       records came back.

import java.time.Duration;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KafkaCheck {
    public static void main(String[] args) throws Exception {
        int rc;
        if (args.length >= 3 && args[0].equals("ready")) {
            long pid = args.length > 3 ? Long.parseLong(args[3]) : -1;
            rc = ready(args[1], Integer.parseInt(args[2]), pid);
        } else if (args.length == 2 && args[0].equals("smoke")) {
            rc = smoke(args[1]);
        } else {
            System.err.println("usage: KafkaCheck ready BOOTSTRAP TIMEOUT_SECONDS [PID] | smoke BOOTSTRAP");
            rc = 64;
        }
        System.exit(rc);
    }

    private static Properties adminProps(String bootstrap, int timeoutMs) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "polaris-bridge-kafka-check");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, 100);
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);
        p.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, 100);
        p.put(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, 500);
        return p;
    }

    private static boolean alive(long pid) {
        return pid <= 0 || ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }

    static int ready(String bootstrap, int timeoutSeconds, long pid) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        String last = "no attempt yet";
        try (Admin admin = Admin.create(adminProps(bootstrap, 3000))) {
            while (true) {
                if (!alive(pid)) {
                    System.err.println("KafkaCheck: broker process " + pid + " exited");
                    return 2;
                }
                try {
                    DescribeClusterResult dc = admin.describeCluster(new DescribeClusterOptions().timeoutMs(3000));
                    Collection<Node> nodes = dc.nodes().get();
                    String clusterId = dc.clusterId().get();
                    Set<String> topics = admin.listTopics(new ListTopicsOptions().timeoutMs(3000)).names().get();
                    if (!nodes.isEmpty()) {
                        System.err.println("KafkaCheck: ready, cluster " + clusterId + ", nodes " + nodes
                                + ", " + topics.size() + " topics");
                        return 0;
                    }
                    last = "describeCluster returned no nodes";
                } catch (ExecutionException e) {
                    last = String.valueOf(e.getCause());
                }
                if (System.nanoTime() > deadline) {
                    System.err.println("KafkaCheck: broker at " + bootstrap + " not ready after "
                            + timeoutSeconds + " s; last error: " + last);
                    return 1;
                }
                Thread.sleep(250);
            }
        }
    }

    static int smoke(String bootstrap) throws Exception {
        long t0 = System.nanoTime();
        String topic = "kafka-check-" + UUID.randomUUID();
        int n = 200;
        try (Admin admin = Admin.create(adminProps(bootstrap, 30000))) {
            admin.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get(30, TimeUnit.SECONDS);

            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < n; i++) {
                    producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
                }
                producer.flush();
            }

            for (String protocol : new String[] {"classic", "consumer"}) {
                Properties cp = new Properties();
                cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
                cp.put(ConsumerConfig.GROUP_ID_CONFIG, topic + "-" + protocol);
                cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
                cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
                cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
                cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
                cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
                Set<String> seen = new HashSet<>();
                long c0 = System.nanoTime();
                try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                    consumer.subscribe(List.of(topic));
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                    while (seen.size() < n && System.nanoTime() < deadline) {
                        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                            if (!r.value().equals("v" + r.key().substring(1))) {
                                System.err.println("KafkaCheck: bad record " + r);
                                return 1;
                            }
                            seen.add(r.key());
                        }
                    }
                    consumer.commitSync();
                }
                if (seen.size() != n) {
                    System.err.println("KafkaCheck: " + protocol + " group consumed " + seen.size() + " of " + n);
                    return 1;
                }
                System.err.printf("KafkaCheck: %s group consumed %d records in %d ms%n", protocol, n,
                        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - c0));
            }
            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
        }
        System.err.printf("KafkaCheck: smoke ok (create topic, produce %d, consume twice, delete) in %d ms%n",
                n, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
        return 0;
    }
}
