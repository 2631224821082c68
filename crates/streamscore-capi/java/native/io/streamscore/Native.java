package io.streamscore;

import java.nio.Buffer;

/**
 * The native library, loaded once per JVM. This class and the exceptions beside it go in
 * {@code streamscore-native.jar}, on the class path of the loader that all jobs share (the
 * system class path, or a server's parent loader); the API ({@code streamscore.jar}: {@code
 * Model}, {@code Runtime}) may then be loaded by any number of child loaders (one per Flink job,
 * one per web application) without "native library already loaded in another classloader": the
 * library is bound to this class's loader only, and every child reaches it through this class.
 *
 * <p>The library is found at the path in the system property {@code streamscore.library} or the
 * environment variable {@code STREAMSCORE_LIBRARY}, else as {@code streamscore_c} on {@code
 * java.library.path}. Handles are the C ABI's numbers: a closed one is refused with {@link
 * InvalidHandleException}, never a crash.
 */
public final class Native {
    static {
        String path = System.getProperty("streamscore.library");
        if (path == null) {
            path = System.getenv("STREAMSCORE_LIBRARY");
        }
        if (path != null) {
            System.load(path);
        } else {
            System.loadLibrary("streamscore_c");
        }
    }

    private Native() {}

    /** The library's version. */
    public static native String version();

    /** Loads a model file; its handle. */
    public static native long modelLoad(String path, String backend);

    /** Loads a model from its file's bytes; its handle. */
    public static native long modelLoadBytes(byte[] data, String backend);

    /** Frees a model handle (twice: {@link InvalidHandleException}). */
    public static native void modelFree(long model);

    /** {n_features, transformed width, raw width}. */
    public static native int[] modelShape(long model);

    /** Scores {@code x} into {@code out}, both read in place. */
    public static native void modelScore(
            long model, float[] x, int nRows, int nCols, boolean columnMajor, boolean raw, float[] out);

    /** Scores a direct FloatBuffer into another, at their addresses. */
    public static native void modelScoreDirect(
            long model, Buffer x, int nRows, int nCols, boolean columnMajor, boolean raw, Buffer out);

    /** Builds a runtime; options are key/value pairs (see the C ABI's ss_runtime_new). */
    public static native long runtimeNew(String model, String[] keys, String[] values);

    /** {fields, outputs}. */
    public static native int[] runtimeShape(long runtime);

    /** Queues one event without blocking; its ticket. */
    public static native long runtimeSubmit(long runtime, float[] values, long key, long timestampMs);

    /** Waits for a ticket's answer into {@code out}; the model version that scored it. */
    public static native long ticketWait(long ticket, float[] out);

    /** Frees a ticket unanswered. */
    public static native void ticketFree(long ticket);

    /** The runtime's metrics in Prometheus' text format. */
    public static native String runtimePrometheus(long runtime);

    /** Swaps the model at a batch boundary; the version now live. */
    public static native long runtimeSwap(long runtime, String path, long version, boolean allowSchemaChange);

    /** Makes a kept version live again. */
    public static native void runtimeRollback(long runtime, long version);

    /** The live version. */
    public static native long runtimeLiveVersion(long runtime);

    /** Stops accepting events and drains. */
    public static native void runtimeShutdown(long runtime);

    /** Drains and frees a runtime. */
    public static native void runtimeFree(long runtime);
}
