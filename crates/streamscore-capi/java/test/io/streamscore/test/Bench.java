package io.streamscore.test;

import io.streamscore.Model;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * What a call through JNI costs: {@code java -cp ... io.streamscore.test.Bench MODEL [ROUNDS]}.
 * Times, per call, the zero-copy path with no rows (the whole boundary: JNI, the buffers'
 * addresses, the C ABI's checks; nothing scored), and 1 and 256 rows through direct buffers
 * and through {@code float[]}. Each figure is the median of ROUNDS rounds of about 0.2 s,
 * after a warm-up; compare with {@code cargo bench -p streamscore-capi --bench overhead}.
 */
public final class Bench {
    private Bench() {}

    interface Call {
        void run();
    }

    static double nsPerCall(Call c, int rounds) {
        for (long end = System.nanoTime() + 500_000_000L; System.nanoTime() < end; ) {
            c.run(); // warm-up: JIT
        }
        double[] r = new double[rounds];
        for (int i = 0; i < rounds; i++) {
            long n = 0, t0 = System.nanoTime(), t;
            do {
                for (int k = 0; k < 64; k++) {
                    c.run();
                }
                n += 64;
                t = System.nanoTime();
            } while (t - t0 < 200_000_000L);
            r[i] = (double) (t - t0) / n;
        }
        java.util.Arrays.sort(r);
        return r[rounds / 2];
    }

    static FloatBuffer direct(int n) {
        return ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
    }

    public static void main(String[] args) {
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 7;
        try (Model m = Model.load(args[0])) {
            int w = m.nFeatures();
            FloatBuffer in0 = direct(w), out0 = direct(1);
            System.out.printf("direct buffers, 0 rows (the boundary alone): %.1f ns/call%n",
                    nsPerCall(() -> m.predict(in0, 0, out0), rounds));
            for (int rows : new int[] {1, 256}) {
                FloatBuffer in = direct(rows * w), out = direct(rows);
                float[] x = new float[rows * w];
                for (int i = 0; i < x.length; i++) {
                    x[i] = ((i * 7919) % 97) / 24.0f - 2.0f;
                }
                in.put(x).rewind();
                System.out.printf("direct buffers, %d rows: %.1f ns/call%n", rows,
                        nsPerCall(() -> m.predict(in, rows, out), rounds));
                System.out.printf("float[], %d rows: %.1f ns/call%n", rows,
                        nsPerCall(() -> m.predict(x, rows), rounds));
            }
        }
    }
}
