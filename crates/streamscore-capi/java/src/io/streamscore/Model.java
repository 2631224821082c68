package io.streamscore;

import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A model loaded once and scored from any number of threads: LightGBM text, XGBoost JSON or
 * ONNX, recognised from the file's content.
 *
 * <pre>{@code
 * try (Model m = Model.load("model.txt")) {
 *     float[] p = m.predict(rows, nRows); // row-major, m.nFeatures() values a row
 * }
 * }</pre>
 *
 * <p>{@link #predict(FloatBuffer, int, FloatBuffer)} scores direct buffers where they lie (no
 * copy); the {@code float[]} calls read the arrays in place too, pinning them for the call.
 * After {@link #close()} every call raises {@link InvalidHandleException}.
 */
public final class Model implements AutoCloseable {
    private final AtomicLong handle;
    private final int nFeatures;
    private final int nOutputs;
    private final int nRaw;

    private Model(long handle) {
        this.handle = new AtomicLong(handle);
        int[] shape = Native.modelShape(handle);
        this.nFeatures = shape[0];
        this.nOutputs = shape[1];
        this.nRaw = shape[2];
    }

    /** Loads a model file with the default backend ({@code auto}). */
    public static Model load(String path) {
        return load(path, "auto");
    }

    /** Loads a model file with a backend spec ({@code auto}, {@code cpu}, {@code cpu:threads=2}...). */
    public static Model load(String path, String backend) {
        return new Model(Native.modelLoad(path, backend));
    }

    /** Loads a model from its file's bytes. */
    public static Model fromBytes(byte[] bytes, String backend) {
        return new Model(Native.modelLoadBytes(bytes, backend));
    }

    /** Values per input row. */
    public int nFeatures() {
        return nFeatures;
    }

    /** Values per row of {@link #predict(float[], int)} (1, or the number of classes). */
    public int nOutputs() {
        return nOutputs;
    }

    /** Values per row of raw margins. */
    public int nRawOutputs() {
        return nRaw;
    }

    /** Scores {@code nRows} row-major rows; {@code nRows * nOutputs()} predictions. */
    public float[] predict(float[] rows, int nRows) {
        return predict(rows, nRows, false, false);
    }

    /**
     * Scores {@code nRows} rows, row-major or column-major (feature after feature), as
     * predictions or raw margins.
     */
    public float[] predict(float[] rows, int nRows, boolean columnMajor, boolean raw) {
        if (nRows < 0) {
            throw new InputException("nRows = " + nRows + " is negative");
        }
        float[] out = new float[Math.multiplyExact(nRows, raw ? nRaw : nOutputs)];
        Native.modelScore(handle.get(), rows, nRows, nFeatures, columnMajor, raw, out);
        return out;
    }

    /** Scores direct, native-order FloatBuffers in place: row-major rows into {@code out}. */
    public void predict(FloatBuffer rows, int nRows, FloatBuffer out) {
        predict(rows, nRows, false, false, out);
    }

    /**
     * Scores direct, native-order FloatBuffers where they lie (no copy), from their first
     * element ({@code position()} must be 0; use {@code slice()} for a part of a buffer).
     */
    public void predict(FloatBuffer rows, int nRows, boolean columnMajor, boolean raw, FloatBuffer out) {
        direct(rows, "rows");
        direct(out, "out");
        Native.modelScoreDirect(handle.get(), rows, nRows, nFeatures, columnMajor, raw, out);
    }

    static void direct(FloatBuffer b, String what) {
        if (b == null) {
            throw new NullPointerException(what);
        }
        if (!b.isDirect() || b.order() != ByteOrder.nativeOrder() || b.position() != 0) {
            throw new IllegalArgumentException(
                    what + " must be a direct FloatBuffer in native order at position 0"
                            + " (ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder()).asFloatBuffer())");
        }
    }

    /** Frees the model; later calls raise {@link InvalidHandleException}. Closing twice is a no-op. */
    @Override
    public void close() {
        long h = handle.getAndSet(0);
        if (h != 0) {
            Native.modelFree(h);
        }
    }
}
