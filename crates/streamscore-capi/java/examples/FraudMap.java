import io.streamscore.Runtime;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * A keyed map function that scores card transactions with streaming features, in the shape of
 * a Flink {@code RichMapFunction<Transaction, Float>} ({@code open}, {@code map}, {@code close})
 * or a Kafka Streams {@code Processor} ({@code init}, {@code process}, {@code close}), written
 * against no framework jars. The runtime computes the features of examples/fraud/spec.toml
 * per card (counts, sums, means over sliding windows) from the raw fields and scores them with
 * the LightGBM model trained on the same features offline.
 *
 * <p>{@code java -Dstreamscore.library=target/release/libstreamscore_c.so
 * -cp target/java/streamscore-native.jar:target/java/streamscore.jar:target/java/examples
 * FraudMap examples/fraud} replays examples/fraud/stream.csv in order and checks the held-out
 * days' scores against LightGBM's own predictions (expected.csv).
 */
public final class FraudMap implements AutoCloseable {
    /** One raw event: the card is the key, ts the event time in ms. */
    public record Transaction(String card, long ts, float amount, String mcc) {}

    // The categorical vocabulary of spec.toml's `mcc` field: an event carries its index.
    private static final List<String> MCC = Arrays.asList("grocery", "fuel", "restaurant", "travel", "online", "atm");

    private Runtime rt;

    /** Flink's open(Configuration) / a Processor's init(context): one runtime per task. */
    public void open(String dir) {
        rt = Runtime.builder(dir + "/model.txt")
                .features(dir + "/spec.toml")
                .option("max_delay_us", "0") // one event at a time: no batching wait
                .build();
    }

    /** Flink's map(value): the transaction's fraud probability. */
    public float map(Transaction t) {
        int code = MCC.indexOf(t.mcc());
        float[] fields = {t.amount(), code < 0 ? Float.NaN : code};
        return rt.score(fields, Long.parseLong(t.card()), t.ts())[0];
    }

    /** Flink's close(): drains and frees the runtime. */
    @Override
    public void close() {
        rt.close();
    }

    public static void main(String[] args) throws Exception {
        String dir = args.length > 0 ? args[0] : "examples/fraud";
        List<String> lines = Files.readAllLines(Path.of(dir, "stream.csv"));
        float[] scores = new float[lines.size() - 1];
        long start = System.nanoTime();
        try (FraudMap f = new FraudMap()) {
            f.open(dir);
            for (int i = 1; i < lines.size(); i++) {
                String[] c = lines.get(i).split(",", -1); // card,ts,amount,mcc,label
                scores[i - 1] = f.map(new Transaction(c[0], Long.parseLong(c[1]), Float.parseFloat(c[2]), c[3]));
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        double worst = 0;
        int held = 0;
        List<String> expected = Files.readAllLines(Path.of(dir, "expected.csv"));
        for (int i = 1; i < expected.size(); i++) {
            String[] c = expected.get(i).split(",");
            int index = Integer.parseInt(c[0]);
            double p = Double.parseDouble(c[1]);
            worst = Math.max(worst, Math.abs(scores[index] - p) / Math.max(Math.abs(p), 1e-30));
            held++;
        }
        System.out.printf("%d transactions scored through FraudMap in %.2f s; %d held-out scores vs LightGBM's: "
                + "max relative difference %.1e%n", scores.length, seconds, held, worst);
        if (worst > 1e-6) {
            System.err.println("online and offline disagree");
            System.exit(1);
        }
    }
}
