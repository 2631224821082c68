package io.streamscore.test;

import io.streamscore.Model;

/** A job as a per-job class loader loads it: scores the golden binary model, returns a sum. */
public final class Job {
    private Job() {}

    /** Loads {@code model}, scores {@code rows}, closes; the scores' sum. */
    public static double run(String model, float[] rows, int nRows) {
        try (Model m = Model.load(model)) {
            double sum = 0;
            for (float p : m.predict(rows, nRows)) {
                sum += p;
            }
            return sum;
        }
    }
}
