/* What a C call costs, timed from C: bench MODEL [ROUNDS]. Per call, the median of ROUNDS
 * rounds of about 0.2 s: ss_model_n_features (a handle looked up, a value written),
 * ss_model_score with 0 rows (the whole boundary of a scoring call, nothing scored), and 1
 * and 256 rows. Run by crates/streamscore-capi/tests/bench.sh (release library); compare with
 * `cargo bench -p streamscore-capi --bench overhead`, which times the Rust calls. */
#include "streamscore.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef int (*call)(ss_model, const float *, size_t, float *);

static int n_features(ss_model m, const float *x, size_t n, float *out) {
    size_t w;
    (void)x, (void)n, (void)out;
    return ss_model_n_features(m, &w);
}

static size_t width;

static int score(ss_model m, const float *x, size_t n, float *out) {
    return ss_model_score(m, x, n, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, n);
}

static double ns_per_call(call f, ss_model m, const float *x, size_t n, float *out, int rounds) {
    for (double end = now() + 0.5; now() < end;)
        if (f(m, x, n, out) != SS_STATUS_OK) exit(1); /* warm-up */
    double r[64];
    for (int i = 0; i < rounds; i++) {
        long calls = 0;
        double t0 = now(), t;
        do {
            for (int k = 0; k < 64; k++) f(m, x, n, out);
            calls += 64;
            t = now();
        } while (t - t0 < 0.2);
        r[i] = (t - t0) / calls * 1e9;
    }
    qsort(r, rounds, sizeof r[0], cmp);
    return r[rounds / 2];
}

int main(int argc, char **argv) {
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    if (argc < 2 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: bench MODEL [ROUNDS (1-64)]\n");
        return 2;
    }
    ss_model m;
    if (ss_model_load(argv[1], NULL, &m) != SS_STATUS_OK) {
        fprintf(stderr, "%s\n", ss_last_error());
        return 1;
    }
    ss_model_n_features(m, &width);
    float *x = malloc(256 * width * sizeof(float)), out[256];
    for (size_t i = 0; i < 256 * width; i++) x[i] = (float)((i * 7919) % 97) / 24.0f - 2.0f;
    printf("ss_model_n_features: %.1f ns/call\n", ns_per_call(n_features, m, x, 0, out, rounds));
    printf("ss_model_score, 0 rows (the boundary alone): %.1f ns/call\n",
           ns_per_call(score, m, x, 0, out, rounds));
    printf("ss_model_score, 1 row: %.1f ns/call\n", ns_per_call(score, m, x, 1, out, rounds));
    printf("ss_model_score, 256 rows: %.1f ns/call\n", ns_per_call(score, m, x, 256, out, rounds));
    ss_model_free(m);
    free(x);
    return 0;
}
