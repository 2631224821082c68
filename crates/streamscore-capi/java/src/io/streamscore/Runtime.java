package io.streamscore;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A scoring runtime: a bounded queue, a deadline micro-batcher, workers, and an optional
 * feature stage, around a model that can be swapped while events flow.
 *
 * <pre>{@code
 * try (Runtime rt = Runtime.builder("model.txt").option("max_batch", "256").build()) {
 *     CompletableFuture<float[]> p = rt.submit(values, key, timestampMs);
 * }
 * }</pre>
 *
 * <p>{@link #submit} never blocks: a full queue raises {@link QueueFullException} at once with
 * the event not taken; an accepted event's future completes with its answer or the error that
 * refused it (expired, shed, closed). Futures complete on one dispatcher thread per runtime,
 * in acceptance order. {@link #close()} drains: every accepted event is answered.
 */
public final class Runtime implements AutoCloseable {
    private final AtomicLong handle;
    private final int nFields;
    private final int nOutputs;
    private final LinkedBlockingQueue<Waiting> waiting = new LinkedBlockingQueue<>();
    private final Thread dispatcher;

    private static final class Waiting {
        final long ticket;
        final CompletableFuture<float[]> future;

        Waiting(long ticket, CompletableFuture<float[]> future) {
            this.ticket = ticket;
            this.future = future;
        }
    }

    private static final Waiting STOP = new Waiting(0, null);

    /** Options for a runtime over one model file. */
    public static final class Builder {
        private final String model;
        private final List<String> keys = new ArrayList<>();
        private final List<String> values = new ArrayList<>();

        private Builder(String model) {
            this.model = model;
        }

        /**
         * One option: {@code backend}, {@code features} (a feature spec's path), {@code
         * max_batch}, {@code max_delay_us}, {@code queue_capacity}, {@code workers}, {@code
         * keep_versions}, {@code model_version}, {@code overload}, {@code non_finite}, {@code
         * output}; an unknown one raises {@link ConfigException} at {@link #build()}.
         */
        public Builder option(String key, String value) {
            keys.add(key);
            values.add(value);
            return this;
        }

        /** Events are a feature spec's raw fields; the stage computes the model's features. */
        public Builder features(String specPath) {
            return option("features", specPath);
        }

        /** Starts the runtime. */
        public Runtime build() {
            long h = Native.runtimeNew(model, keys.toArray(new String[0]), values.toArray(new String[0]));
            return new Runtime(h);
        }
    }

    /** Options for a runtime scoring {@code modelPath}. */
    public static Builder builder(String modelPath) {
        return new Builder(modelPath);
    }

    private Runtime(long h) {
        this.handle = new AtomicLong(h);
        int[] shape = Native.runtimeShape(h);
        this.nFields = shape[0];
        this.nOutputs = shape[1];
        this.dispatcher = new Thread(this::dispatch, "streamscore-dispatch");
        this.dispatcher.setDaemon(true);
        this.dispatcher.start();
    }

    private void dispatch() {
        for (;;) {
            Waiting w;
            try {
                w = waiting.take();
            } catch (InterruptedException e) {
                continue; // only STOP ends the loop: every accepted event is answered
            }
            if (w == STOP) {
                // A submission that raced close() still gets its answer.
                while ((w = waiting.poll()) != null) {
                    if (w != STOP) {
                        answer(w);
                    }
                }
                return;
            }
            answer(w);
        }
    }

    private void answer(Waiting w) {
        float[] out = new float[nOutputs];
        try {
            Native.ticketWait(w.ticket, out);
            w.future.complete(out);
        } catch (RuntimeException e) {
            w.future.completeExceptionally(e);
        }
    }

    /** Values per event: the model's features, or the feature stage's raw fields. */
    public int nFields() {
        return nFields;
    }

    /** Values per answer. */
    public int nOutputs() {
        return nOutputs;
    }

    /** Queues one event without blocking; its answer to come. */
    public CompletableFuture<float[]> submit(float[] values, long key, long timestampMs) {
        long t = Native.runtimeSubmit(handle.get(), values, key, timestampMs);
        CompletableFuture<float[]> f = new CompletableFuture<>();
        waiting.add(new Waiting(t, f));
        return f;
    }

    /** Scores one event on the calling thread, waiting for its answer. */
    public float[] score(float[] values, long key, long timestampMs) {
        long t = Native.runtimeSubmit(handle.get(), values, key, timestampMs);
        float[] out = new float[nOutputs];
        Native.ticketWait(t, out);
        return out;
    }

    /** The metrics in Prometheus' text format. */
    public String prometheus() {
        return Native.runtimePrometheus(handle.get());
    }

    /** Replaces the model at a batch boundary; the new version (a hash of the file). */
    public long swap(String modelPath) {
        return swap(modelPath, 0, false);
    }

    /**
     * Replaces the model at a batch boundary with {@code version} (0: a hash of the file); a
     * file that fails leaves the serving version live and raises.
     */
    public long swap(String modelPath, long version, boolean allowSchemaChange) {
        return Native.runtimeSwap(handle.get(), modelPath, version, allowSchemaChange);
    }

    /** Makes a kept version live again. */
    public void rollback(long version) {
        Native.runtimeRollback(handle.get(), version);
    }

    /** The live model version. */
    public long liveVersion() {
        return Native.runtimeLiveVersion(handle.get());
    }

    /** Drains (every accepted event answered, every future completed) and frees the runtime. */
    @Override
    public void close() {
        long h = handle.getAndSet(0);
        if (h == 0) {
            return;
        }
        Native.runtimeShutdown(h);
        waiting.add(STOP);
        boolean interrupted = false;
        for (;;) {
            try {
                dispatcher.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        Native.runtimeFree(h);
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
