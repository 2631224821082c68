package io.streamscore.test;

import io.streamscore.ClosedException;
import io.streamscore.ConfigException;
import io.streamscore.InputException;
import io.streamscore.InvalidHandleException;
import io.streamscore.Model;
import io.streamscore.ModelException;
import io.streamscore.Native;
import io.streamscore.Runtime;
import io.streamscore.WidthException;
import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * The JVM binding's tests (no JUnit: nothing can be downloaded here, and Debian's junit4 is
 * not on every machine): {@code java -cp ... io.streamscore.test.Suite REPO_ROOT API_JAR TEST_CLASSES RUST_SCORES}.
 * Every check that fails prints its reason and exits 1; the last line counts the checks.
 */
public final class Suite {
    private static int checks = 0;

    private Suite() {}

    static void check(boolean ok, String what) {
        checks++;
        if (!ok) {
            System.err.println("FAILED: " + what);
            System.exit(1);
        }
    }

    interface Body {
        void run() throws Throwable;
    }

    static void raises(Class<? extends Throwable> kind, Body body, String what) {
        checks++;
        try {
            body.run();
        } catch (Throwable t) {
            if (kind.isInstance(t)) {
                return;
            }
            System.err.println("FAILED: " + what + ": raised " + t + ", expected " + kind.getSimpleName());
            System.exit(1);
        }
        System.err.println("FAILED: " + what + ": raised nothing, expected " + kind.getSimpleName());
        System.exit(1);
    }

    /** A CSV of floats; an empty field is NaN. */
    static float[][] csv(Path p, boolean header) throws Exception {
        List<String> lines = Files.readAllLines(p);
        List<float[]> rows = new ArrayList<>();
        for (int i = header ? 1 : 0; i < lines.size(); i++) {
            String[] f = lines.get(i).split(",", -1);
            float[] r = new float[f.length];
            for (int j = 0; j < f.length; j++) {
                r[j] = number(f[j]);
            }
            rows.add(r);
        }
        return rows.toArray(new float[0][]);
    }

    /** A CSV field as NumPy writes it: empty or nan is NaN, inf and -inf are infinities. */
    static float number(String f) {
        switch (f.trim().toLowerCase()) {
            case "":
            case "nan":
                return Float.NaN;
            case "inf":
            case "+inf":
                return Float.POSITIVE_INFINITY;
            case "-inf":
                return Float.NEGATIVE_INFINITY;
            default:
                return Float.parseFloat(f);
        }
    }

    static float[] flat(float[][] rows) {
        int w = rows[0].length;
        float[] v = new float[rows.length * w];
        for (int r = 0; r < rows.length; r++) {
            System.arraycopy(rows[r], 0, v, r * w, w);
        }
        return v;
    }

    static FloatBuffer direct(int n) {
        return ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
    }

    static String modelFile(Path dir) {
        Path txt = dir.resolve("model.txt");
        return (Files.exists(txt) ? txt : dir.resolve("model.json")).toString();
    }

    /**
     * Every golden model: float[] and direct buffers, both layouts, the Rust scorer's bits
     * (`streamscore score`'s shortest round-trip output, in {@code rust}); the training
     * library's values within 1e-6.
     */
    static void golden(Path root, Path rust) throws Exception {
        List<Path> dirs = new ArrayList<>();
        try (var s = Files.list(root.resolve("models/golden"))) {
            s.filter(d -> Files.exists(d.resolve("input.csv"))).sorted().forEach(dirs::add);
        }
        check(dirs.size() >= 40, "40 golden cases or more");
        for (Path dir : dirs) {
            float[][] rows = csv(dir.resolve("input.csv"), true);
            int n = rows.length;
            float[] x = flat(rows);
            try (Model m = Model.load(modelFile(dir))) {
                int w = m.nFeatures();
                check(w == rows[0].length, dir + ": width");
                float[] cols = new float[x.length];
                for (int r = 0; r < n; r++) {
                    for (int c = 0; c < w; c++) {
                        cols[c * n + r] = x[r * w + c];
                    }
                }
                for (boolean raw : new boolean[] {false, true}) {
                    float[] want = flat(csv(dir.resolve(raw ? "raw.csv" : "pred.csv"), false));
                    String name = dir.getFileName() + (raw ? ".raw.csv" : ".pred.csv");
                    float[] rustScores = flat(csv(rust.resolve(name), false));
                    float[] a = m.predict(x, n, false, raw);
                    float[] b = m.predict(cols, n, true, raw);
                    FloatBuffer in = direct(x.length), out = direct(a.length);
                    in.put(x).rewind();
                    m.predict(in, n, false, raw, out);
                    check(a.length == want.length, dir + ": output width");
                    for (int i = 0; i < a.length; i++) {
                        int bits = Float.floatToRawIntBits(a[i]);
                        check(bits == Float.floatToRawIntBits(b[i]), dir + ": column-major bits at " + i);
                        check(bits == Float.floatToRawIntBits(out.get(i)), dir + ": direct buffer bits at " + i);
                        check(bits == Float.floatToRawIntBits(rustScores[i]), dir + ": the Rust scorer's bits at " + i
                                + ": " + a[i] + " vs " + rustScores[i]);
                        double e = want[i] == 0 ? Math.abs(a[i]) : Math.abs(a[i] - (double) want[i]) / Math.abs(want[i]);
                        // pred.csv holds doubles; parsing them as float costs up to half an ulp
                        check(e <= 1e-6, dir + (raw ? " raw" : " pred") + " at " + i + ": " + a[i] + " vs " + want[i]);
                    }
                }
            }
        }
        System.out.println("golden: " + dirs.size() + " models ok");
    }

    static void misuse(Path root) throws Exception {
        String binary = root.resolve("models/golden/lgb_binary/model.txt").toString();
        raises(ModelException.class, () -> Model.load("/nonexistent/model.txt"), "a missing file");
        raises(ModelException.class, () -> Model.fromBytes("tree\nnum_class=x\n".getBytes(), "auto"), "garbage bytes");
        raises(ConfigException.class, () -> Model.load(binary, "no-such-backend"), "an unknown backend");
        raises(NullPointerException.class, () -> Model.load(null), "a null path");
        Model m = Model.fromBytes(Files.readAllBytes(Path.of(binary)), "cpu");
        float[] row = new float[m.nFeatures()];
        raises(InputException.class, () -> m.predict(new float[3], 1), "too few values for the rows");
        raises(InputException.class, () -> m.predict(row, -1), "a negative row count");
        raises(NullPointerException.class, () -> m.predict((float[]) null, 1), "null rows");
        raises(IllegalArgumentException.class, () -> m.predict(FloatBuffer.allocate(8), 1, direct(1)), "a heap buffer");
        raises(InputException.class, () -> m.predict(direct(8), 1, direct(0)), "an output buffer too small");
        raises(InputException.class, () -> m.predict(direct(4), 1, direct(1)), "an input buffer too small");
        check(m.predict(row, 1).length == 1, "one row scored");
        m.close();
        m.close(); // idempotent
        raises(InvalidHandleException.class, () -> m.predict(row, 1), "a closed model");
        raises(InvalidHandleException.class, () -> Native.modelFree(12345), "a forged handle");
        long h = Native.modelLoad(binary, null);
        Native.modelFree(h);
        raises(InvalidHandleException.class, () -> Native.modelFree(h), "a double free");
        System.out.println("misuse: ok");
    }

    static void runtime(Path root) throws Exception {
        Path dir = root.resolve("models/golden/lgb_binary");
        float[][] rows = csv(dir.resolve("input.csv"), true);
        float[] want;
        try (Model m = Model.load(modelFile(dir), "cpu")) {
            want = m.predict(flat(rows), rows.length);
        }
        raises(ConfigException.class, () -> Runtime.builder(modelFile(dir)).option("max_bach", "1").build(), "an unknown option");
        Runtime rt = Runtime.builder(modelFile(dir)).option("max_batch", "64").option("max_delay_us", "200").build();
        check(rt.nFields() == rows[0].length && rt.nOutputs() == 1, "runtime shape");
        List<CompletableFuture<float[]>> futures = new ArrayList<>();
        for (int r = 0; r < rows.length; r++) {
            futures.add(rt.submit(rows[r], r, 0));
        }
        for (int r = 0; r < rows.length; r++) {
            float[] got = futures.get(r).join();
            check(Float.floatToRawIntBits(got[0]) == Float.floatToRawIntBits(want[r]), "future " + r + " is the model's score");
        }
        check(Float.floatToRawIntBits(rt.score(rows[1], 1, 0)[0]) == Float.floatToRawIntBits(want[1]), "score");
        raises(WidthException.class, () -> rt.submit(new float[3], 0, 0), "a short event");
        check(rt.prometheus().contains("streamscore_"), "prometheus text");
        long live = rt.liveVersion();
        raises(ConfigException.class, () -> rt.swap(modelFile(root.resolve("models/golden/lgb_deep"))), "another width");
        check(rt.swap(modelFile(root.resolve("models/golden/lgb_binary_sigmoid")), 9, false) == 9, "swapped");
        check(rt.liveVersion() == 9, "version 9 live");
        rt.rollback(live);
        check(rt.liveVersion() == live, "rolled back");
        rt.close();
        rt.close();
        raises(InvalidHandleException.class, () -> rt.submit(rows[0], 0, 0), "a closed runtime");

        // A future that completes exceptionally: the runtime shut down under queued events is
        // not that (they drain); an event refused after acceptance is (non_finite = reject).
        try (Runtime strict = Runtime.builder(modelFile(dir)).option("non_finite", "reject").build()) {
            float[] bad = rows[0].clone();
            bad[0] = Float.POSITIVE_INFINITY;
            raises(InputException.class, () -> {
                try {
                    strict.submit(bad, 0, 0).join();
                } catch (CompletionException e) {
                    throw e.getCause();
                }
            }, "an infinite value refused");
        }
        System.out.println("runtime: ok");
    }

    static void threads(Path root) throws Exception {
        Path dir = root.resolve("models/golden/lgb_binary");
        float[][] rows = csv(dir.resolve("input.csv"), true);
        float[] x = flat(rows);
        try (Model m = Model.load(modelFile(dir)); Runtime rt = Runtime.builder(modelFile(dir)).build()) {
            float[] want = m.predict(x, rows.length);
            Thread[] t = new Thread[8];
            int[] failures = new int[t.length];
            for (int i = 0; i < t.length; i++) {
                final int me = i;
                t[i] = new Thread(() -> {
                    for (int round = 0; round < 20; round++) {
                        float[] got = m.predict(x, rows.length);
                        for (int r = 0; r < rows.length; r += 13) {
                            if (Float.floatToRawIntBits(got[r]) != Float.floatToRawIntBits(want[r])
                                    || Float.floatToRawIntBits(rt.score(rows[r], r, 0)[0]) != Float.floatToRawIntBits(want[r])) {
                                failures[me]++;
                            }
                        }
                    }
                });
                t[i].start();
            }
            for (int i = 0; i < t.length; i++) {
                t[i].join();
                check(failures[i] == 0, "thread " + i + " got the model's scores");
            }
        }
        System.out.println("threads: ok");
    }

    /**
     * Two per-job class loaders (as Flink and application servers make them) load the API jar
     * and a job each; Native, on the parent loader, is shared: the library is loaded once.
     */
    static void classLoaders(Path root, String apiJar, String testClasses) throws Exception {
        String model = root.resolve("models/golden/lgb_binary/model.txt").toString();
        float[][] rows = csv(root.resolve("models/golden/lgb_binary/input.csv"), true);
        float[] x = flat(rows);
        double want = Job.run(model, x, rows.length);
        URL[] urls = {new File(apiJar).toURI().toURL(), new File(testClasses).toURI().toURL()};
        ClassLoader parent = Native.class.getClassLoader();
        Class<?> first = null;
        for (int i = 0; i < 2; i++) {
            try (URLClassLoader job = new ChildFirst(urls, parent)) {
                Class<?> c = job.loadClass("io.streamscore.test.Job");
                check(c.getClassLoader() == job, "the job class is the child loader's own");
                check(job.loadClass("io.streamscore.Model").getClassLoader() == job, "the API is the child loader's own");
                check(job.loadClass("io.streamscore.Native") == Native.class, "Native is shared");
                if (first != null) {
                    check(c != first, "two loaders, two job classes");
                }
                first = c;
                double got = (double) c.getMethod("run", String.class, float[].class, int.class).invoke(null, model, x, rows.length);
                check(got == want, "a job in loader " + i + " scores as the parent does");
            }
        }
        System.out.println("class loaders: ok");
    }

    /** Loads its own copy of every class but the JDK's and those of the native jar (child first, as Flink does). */
    static final class ChildFirst extends URLClassLoader {
        ChildFirst(URL[] urls, ClassLoader parent) {
            super(urls, parent);
        }

        @Override
        protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
            synchronized (getClassLoadingLock(name)) {
                Class<?> c = findLoadedClass(name);
                if (c == null && name.startsWith("io.streamscore.") && !isNative(name)) {
                    try {
                        c = findClass(name);
                    } catch (ClassNotFoundException e) {
                        c = null;
                    }
                }
                if (c == null) {
                    c = super.loadClass(name, false);
                }
                if (resolve) {
                    resolveClass(c);
                }
                return c;
            }
        }

        private static boolean isNative(String name) {
            return name.equals("io.streamscore.Native") || name.endsWith("Exception");
        }
    }

    public static void main(String[] args) throws Exception {
        Path root = Path.of(args[0]);
        check(!Native.version().isEmpty(), "a version");
        golden(root, Path.of(args[3]));
        misuse(root);
        runtime(root);
        threads(root);
        classLoaders(root, args[1], args[2]);
        System.out.println("java suite: " + checks + " checks passed");
    }
}
