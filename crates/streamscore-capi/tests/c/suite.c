/* The C ABI's test suite, in C: every call, every misuse the API promises to catch, and many
 * threads at once. Run by crates/streamscore-capi/tests/run.sh (plain and under valgrind):
 *   suite GOLDEN_DIR...   each a models/golden/<case> directory (model, input.csv, pred.csv,
 *                         raw.csv from the library that trained the model)
 * Prints one line per check group and "c suite: N checks passed"; exits 1 on the first failure. */
#include "streamscore.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, ss_last_error());                               \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define EXPECT(call, status)                                                            \
    do {                                                                                \
        ss_status got_ = (call);                                                        \
        checks++;                                                                       \
        if (got_ != (status)) {                                                         \
            fprintf(stderr, "%s:%d: %s gave %s, expected %s (last error: %s)\n",         \
                    __FILE__, __LINE__, #call, ss_status_name(got_), ss_status_name(status), \
                    ss_last_error());                                                   \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

#define OK(call) EXPECT(call, SS_STATUS_OK)

/* A CSV of floats: an optional header line, empty fields are NaN. */
typedef struct {
    float *v;
    size_t rows, cols;
} table;

static table read_csv(const char *path, int header) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    table t = {NULL, 0, 0};
    size_t cap = 0, n = 0;
    char line[1 << 16];
    if (header && !fgets(line, sizeof line, f)) exit(1);
    while (fgets(line, sizeof line, f)) {
        size_t cols = 0;
        char *p = line;
        for (;;) {
            char *end;
            float x = strtof(p, &end);
            if (end == p) x = NAN; /* an empty field */
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                t.v = realloc(t.v, cap * sizeof(float));
            }
            t.v[n++] = x;
            cols++;
            p = strchr(end, ',');
            if (!p) break;
            p++;
        }
        if (t.cols == 0) t.cols = cols;
        CHECK(cols == t.cols);
        t.rows++;
    }
    fclose(f);
    return t;
}

static double rel_err(double a, double b) { return b == 0 ? fabs(a) : fabs(a - b) / fabs(b); }

static char *model_file(const char *dir) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/model.txt", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
        return path;
    }
    snprintf(path, sizeof path, "%s/model.json", dir);
    return path;
}

/* Scores a golden case both ways and both outputs; compares with the library's predictions. */
static void golden(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/input.csv", dir);
    table x = read_csv(path, 1);
    ss_model m;
    OK(ss_model_load(model_file(dir), NULL, &m));
    size_t width, k;
    OK(ss_model_n_features(m, &width));
    CHECK(width == x.cols);
    float *cols = malloc(x.rows * x.cols * sizeof(float));
    for (size_t r = 0; r < x.rows; r++)
        for (size_t c = 0; c < x.cols; c++) cols[c * x.rows + r] = x.v[r * x.cols + c];
    const char *names[2] = {"pred.csv", "raw.csv"};
    for (uint32_t output = 0; output < 2; output++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[output]);
        table want = read_csv(path, 0);
        OK(ss_model_output_width(m, output, &k));
        CHECK(want.rows == x.rows && want.cols == k);
        float *a = malloc(x.rows * k * sizeof(float)), *b = malloc(x.rows * k * sizeof(float));
        OK(ss_model_score(m, x.v, x.rows, x.cols, SS_ROW_MAJOR, output, a, x.rows * k));
        OK(ss_model_score(m, cols, x.rows, x.cols, SS_COLUMN_MAJOR, output, b, x.rows * k));
        for (size_t i = 0; i < x.rows * k; i++) {
            /* the same bits in either memory order; the library's value within 1e-6 */
            CHECK(memcmp(&a[i], &b[i], sizeof(float)) == 0);
            if (rel_err(a[i], want.v[i]) > 1e-6) {
                fprintf(stderr, "%s %s [%zu]: ours %.9g, library %.9g\n", dir, names[output], i,
                        a[i], want.v[i]);
                exit(1);
            }
        }
        free(a);
        free(b);
        free(want.v);
    }
    OK(ss_model_free(m));
    free(cols);
    free(x.v);
}

static void misuse_model(const char *dir) {
    ss_model m, gone;
    float row[64] = {0}, out[64];
    size_t width, needed = 0;
    char name[64];

    EXPECT(ss_model_load(NULL, NULL, &m), SS_STATUS_NULL_POINTER);
    EXPECT(ss_model_load(model_file(dir), NULL, NULL), SS_STATUS_NULL_POINTER);
    EXPECT(ss_model_load("/nonexistent/model.txt", NULL, &m), SS_STATUS_IO);
    EXPECT(ss_model_load("\xff\xfe", NULL, &m), SS_STATUS_INVALID_ARGUMENT);
    EXPECT(ss_model_load(model_file(dir), "no-such-backend", &m), SS_STATUS_CONFIG);
    const uint8_t garbage[] = "tree\nversion=v4\nnum_class=banana\n";
    EXPECT(ss_model_load_bytes(garbage, sizeof garbage - 1, NULL, &m), SS_STATUS_MODEL);
    EXPECT(ss_model_load_bytes(garbage, 0, NULL, &m), SS_STATUS_MODEL);
    EXPECT(ss_model_load_bytes(NULL, 10, NULL, &m), SS_STATUS_NULL_POINTER);
    CHECK(strlen(ss_last_error()) > 0);

    /* the same model from its bytes */
    FILE *f = fopen(model_file(dir), "rb");
    CHECK(f != NULL);
    static uint8_t bytes[1 << 22];
    size_t len = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    OK(ss_model_load_bytes(bytes, len, "cpu", &m));
    OK(ss_model_n_features(m, &width));
    CHECK(width <= 64);

    /* names, and the size protocol */
    EXPECT(ss_model_feature_name(m, 0, NULL, 0, &needed), SS_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed > 1);
    OK(ss_model_feature_name(m, 0, name, sizeof name, NULL));
    CHECK(strlen(name) + 1 == needed);
    EXPECT(ss_model_feature_name(m, width, name, sizeof name, NULL), SS_STATUS_INVALID_ARGUMENT);
    OK(ss_model_backend(m, name, sizeof name, NULL));
    CHECK(strlen(name) > 0);

    /* scoring mistakes */
    EXPECT(ss_model_score(m, row, 1, width + 1, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, 64),
           SS_STATUS_WIDTH);
    EXPECT(ss_model_score(m, NULL, 1, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, 64),
           SS_STATUS_NULL_POINTER);
    EXPECT(ss_model_score(m, row, 1, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, NULL, 64),
           SS_STATUS_NULL_POINTER);
    EXPECT(ss_model_score(m, row, 1, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, 0),
           SS_STATUS_BUFFER_TOO_SMALL);
    EXPECT(ss_model_score(m, row, 1, width, 7, SS_OUTPUT_TRANSFORMED, out, 64),
           SS_STATUS_INVALID_ARGUMENT);
    EXPECT(ss_model_score(m, row, 1, width, SS_ROW_MAJOR, 9, out, 64), SS_STATUS_INVALID_ARGUMENT);
    EXPECT(ss_model_score(m, (const float *)((const char *)row + 1), 1, width, SS_ROW_MAJOR,
                          SS_OUTPUT_TRANSFORMED, out, 64),
           SS_STATUS_INVALID_ARGUMENT);
    EXPECT(ss_model_score(m, row, 1, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, row, 64),
           SS_STATUS_INVALID_ARGUMENT); /* out overlaps the input */
    EXPECT(ss_model_score(m, row, SIZE_MAX / 2, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out,
                          SIZE_MAX),
           SS_STATUS_INVALID_ARGUMENT); /* a size that overflows, refused before any read */
    OK(ss_model_score(m, NULL, 0, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, NULL, 0));
    for (size_t i = 0; i < width; i++) row[i] = NAN; /* every value missing is a valid row */
    OK(ss_model_score(m, row, 1, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, 64));
    CHECK(isfinite(out[0]));
    EXPECT(ss_model_n_features(m, NULL), SS_STATUS_NULL_POINTER);

    /* handles: used after free, freed twice, forged, of another kind, null */
    gone = m;
    OK(ss_model_free(m));
    EXPECT(ss_model_free(gone), SS_STATUS_INVALID_HANDLE);
    EXPECT(ss_model_n_features(gone, &width), SS_STATUS_INVALID_HANDLE);
    EXPECT(ss_model_score(gone, row, 1, width, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, 64),
           SS_STATUS_INVALID_HANDLE);
    ss_model forged = {gone.id + 1000000}, null = {0};
    EXPECT(ss_model_free(forged), SS_STATUS_INVALID_HANDLE);
    EXPECT(ss_model_free(null), SS_STATUS_INVALID_HANDLE);
    ss_runtime not_a_runtime = {gone.id};
    EXPECT(ss_runtime_free(not_a_runtime), SS_STATUS_INVALID_HANDLE);
    CHECK(strstr(ss_last_error(), "not a runtime handle") != NULL);
    printf("model misuse: ok\n");
}

static void runtime_calls(const char *dir, const char *other_width_dir, const char *swap_dir) {
    ss_runtime rt;
    const char *keys[] = {"max_batch", "max_delay_us", "queue_capacity", "backend"};
    const char *values[] = {"64", "200", "4096", "cpu"};
    const char *bad_key[] = {"max_bach"}, *bad_value[] = {"sixty-four"};
    EXPECT(ss_runtime_new(model_file(dir), bad_key, values, 1, &rt), SS_STATUS_CONFIG);
    EXPECT(ss_runtime_new(model_file(dir), keys, bad_value, 1, &rt), SS_STATUS_CONFIG);
    EXPECT(ss_runtime_new(model_file(dir), NULL, NULL, 1, &rt), SS_STATUS_NULL_POINTER);
    OK(ss_runtime_new(model_file(dir), keys, values, 4, &rt));
    size_t fields, outputs, needed;
    OK(ss_runtime_shape(rt, &fields, &outputs));
    CHECK(outputs == 1);
    char name[64];
    OK(ss_runtime_field_name(rt, 0, name, sizeof name, NULL));

    char path[4096];
    snprintf(path, sizeof path, "%s/input.csv", dir);
    table x = read_csv(path, 1);
    CHECK(x.cols == fields);
    ss_model m;
    OK(ss_model_load(model_file(dir), "cpu", &m));
    float *want = malloc(x.rows * sizeof(float)), *got = malloc(x.rows * sizeof(float));
    OK(ss_model_score(m, x.v, x.rows, x.cols, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, want, x.rows));

    /* blocking, and tickets waited on and polled: the model's own scores, bit for bit */
    uint64_t version = 0, live = 0;
    OK(ss_runtime_score(rt, x.v, fields, 1, 0, got, 1, &version));
    OK(ss_runtime_live_version(rt, &live));
    CHECK(version == live && memcmp(got, want, sizeof(float)) == 0);
    ss_ticket *tickets = malloc(x.rows * sizeof(ss_ticket));
    for (size_t r = 0; r < x.rows; r++)
        OK(ss_runtime_submit(rt, x.v + r * fields, fields, r, 0, &tickets[r]));
    for (size_t r = 0; r < x.rows; r++) {
        ss_status s[1];
        if (r % 2) {
            OK(ss_ticket_wait(tickets[r], got + r, 1, s, 1, NULL));
        } else {
            ss_status st;
            while ((st = ss_ticket_poll(tickets[r], got + r, 1, NULL, 0, NULL)) ==
                   SS_STATUS_PENDING) {
            }
            OK(st);
        }
    }
    CHECK(memcmp(got, want, x.rows * sizeof(float)) == 0);
    EXPECT(ss_ticket_wait(tickets[0], got, 1, NULL, 0, NULL), SS_STATUS_INVALID_HANDLE);
    EXPECT(ss_ticket_free(tickets[1]), SS_STATUS_INVALID_HANDLE);

    /* a set in one call: every answer and status */
    uint64_t *ks = malloc(x.rows * sizeof(uint64_t));
    int64_t *times = calloc(x.rows, sizeof(int64_t));
    for (size_t r = 0; r < x.rows; r++) ks[r] = r;
    ss_events set = {x.v, x.rows, fields, ks, times};
    ss_ticket t;
    OK(ss_runtime_submit_many(rt, &set, &t));
    ss_status *statuses = malloc(x.rows * sizeof(ss_status));
    EXPECT(ss_ticket_wait(t, got, x.rows - 1, statuses, x.rows, NULL), SS_STATUS_BUFFER_TOO_SMALL);
    EXPECT(ss_ticket_wait(t, got, x.rows, statuses, 1, NULL), SS_STATUS_BUFFER_TOO_SMALL);
    OK(ss_ticket_wait(t, got, x.rows, statuses, x.rows, NULL)); /* still valid after those */
    for (size_t r = 0; r < x.rows; r++)
        CHECK(statuses[r] == SS_STATUS_OK && memcmp(&got[r], &want[r], sizeof(float)) == 0);

    /* one event of a set refused (an infinite value under non_finite = reject): its status
     * says so, its value is NaN, the others are scored */
    {
        ss_runtime strict;
        const char *k[] = {"non_finite"}, *v[] = {"reject"};
        OK(ss_runtime_new(model_file(dir), k, v, 1, &strict));
        enum { R = 16 };
        float *r16 = malloc(R * fields * sizeof(float)), o[R], m16[R];
        for (size_t i = 0; i < R * fields; i++) r16[i] = (float)(i % 7) * 0.25f - 0.5f;
        OK(ss_model_score(m, r16, R, fields, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, m16, R));
        r16[3 * fields + 1] = INFINITY;
        ss_events bad = {r16, R, fields, NULL, NULL};
        ss_status st[R];
        OK(ss_runtime_submit_many(strict, &bad, &t));
        OK(ss_ticket_wait(t, o, R, st, R, NULL));
        for (int i = 0; i < R; i++) {
            if (i == 3)
                CHECK(st[i] == SS_STATUS_INPUT && isnan(o[i]));
            else
                CHECK(st[i] == SS_STATUS_OK && memcmp(&o[i], &m16[i], sizeof(float)) == 0);
        }
        /* the same event alone: the call's status is the event's */
        EXPECT(ss_runtime_score(strict, r16 + 3 * fields, fields, 0, 0, o, 1, NULL),
               SS_STATUS_INPUT);
        OK(ss_runtime_free(strict));
        free(r16);
    }
    set.n_cols = fields + 1;
    EXPECT(ss_runtime_submit_many(rt, &set, &t), SS_STATUS_WIDTH);
    EXPECT(ss_runtime_submit_many(rt, NULL, &t), SS_STATUS_NULL_POINTER);
    EXPECT(ss_runtime_submit(rt, x.v, fields - 1, 0, 0, &t), SS_STATUS_WIDTH);

    /* a ticket freed unanswered: its event is still scored */
    OK(ss_runtime_submit(rt, x.v, fields, 0, 0, &t));
    OK(ss_ticket_free(t));

    /* metrics change while events are scored, so the text can outgrow the size just asked:
     * ask again with the new size until it fits */
    EXPECT(ss_runtime_prometheus(rt, NULL, 0, &needed), SS_STATUS_BUFFER_TOO_SMALL);
    char *text = NULL;
    ss_status ps;
    do {
        text = realloc(text, needed);
        ps = ss_runtime_prometheus(rt, text, needed, &needed);
    } while (ps == SS_STATUS_BUFFER_TOO_SMALL);
    OK(ps);
    CHECK(strstr(text, "streamscore_events_total") != NULL || strstr(text, "streamscore_") != NULL);
    free(text);

    /* swaps: another input width never goes live; a good file does; rollback */
    EXPECT(ss_runtime_swap(rt, model_file(other_width_dir), 0, 0, NULL), SS_STATUS_CONFIG);
    CHECK(strstr(ss_last_error(), "the serving version stays") != NULL);
    EXPECT(ss_runtime_swap(rt, "/nonexistent/model.txt", 0, 0, NULL), SS_STATUS_IO);
    EXPECT(ss_runtime_swap(rt, model_file(swap_dir), 0, 2, NULL), SS_STATUS_INVALID_ARGUMENT);
    uint64_t v2 = 0;
    OK(ss_runtime_swap(rt, model_file(swap_dir), 7, 0, &v2));
    CHECK(v2 == 7);
    OK(ss_runtime_score(rt, x.v, fields, 1, 0, got, 1, &version));
    CHECK(version == 7);
    OK(ss_runtime_rollback(rt, live));
    OK(ss_runtime_score(rt, x.v, fields, 1, 0, got, 1, &version));
    CHECK(version == live && memcmp(got, want, sizeof(float)) == 0);
    EXPECT(ss_runtime_rollback(rt, 12345), SS_STATUS_CONFIG);

    /* shut down: submissions are refused; freed: the handle is gone */
    OK(ss_runtime_shutdown(rt));
    EXPECT(ss_runtime_submit(rt, x.v, fields, 0, 0, &t), SS_STATUS_CLOSED);
    EXPECT(ss_runtime_score(rt, x.v, fields, 0, 0, got, 1, NULL), SS_STATUS_CLOSED);
    OK(ss_runtime_free(rt));
    EXPECT(ss_runtime_free(rt), SS_STATUS_INVALID_HANDLE);
    EXPECT(ss_runtime_shape(rt, &fields, NULL), SS_STATUS_INVALID_HANDLE);
    OK(ss_model_free(m));
    free(want), free(got), free(tickets), free(ks), free(times), free(statuses), free(x.v);
    printf("runtime: ok\n");
}

/* Many threads on one model and one runtime at once; one more frees the model mid-way. */
typedef struct {
    ss_model m;
    ss_runtime rt;
    const table *x;
    const float *want;
    int freed_ok; /* the model may be freed under this thread */
    int failures;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    size_t n = w->x->rows, cols = w->x->cols;
    float out[1];
    for (int round = 0; round < 20; round++) {
        for (size_t r = 0; r < n; r += 7) {
            ss_status s = ss_model_score(w->m, w->x->v + r * cols, 1, cols, SS_ROW_MAJOR,
                                         SS_OUTPUT_TRANSFORMED, out, 1);
            if (s == SS_STATUS_INVALID_HANDLE && w->freed_ok) continue;
            if (s != SS_STATUS_OK || memcmp(out, &w->want[r], sizeof(float)) != 0) w->failures++;
            ss_ticket t;
            s = ss_runtime_submit(w->rt, w->x->v + r * cols, cols, r, 0, &t);
            if (s == SS_STATUS_QUEUE_FULL) continue;
            if (s != SS_STATUS_OK || ss_ticket_wait(t, out, 1, NULL, 0, NULL) != SS_STATUS_OK ||
                memcmp(out, &w->want[r], sizeof(float)) != 0)
                w->failures++;
        }
    }
    return NULL;
}

static void threads(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/input.csv", dir);
    table x = read_csv(path, 1);
    ss_model m, doomed;
    ss_runtime rt;
    OK(ss_model_load(model_file(dir), "cpu", &m));
    OK(ss_model_load(model_file(dir), "cpu", &doomed));
    OK(ss_runtime_new(model_file(dir), NULL, NULL, 0, &rt));
    float *want = malloc(x.rows * sizeof(float));
    OK(ss_model_score(m, x.v, x.rows, x.cols, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, want, x.rows));
    enum { N = 8 };
    pthread_t th[N];
    worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker){i % 2 ? doomed : m, rt, &x, want, i % 2, 0};
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    OK(ss_model_free(doomed)); /* while half the threads score it */
    for (int i = 0; i < N; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECK(w[i].failures == 0);
    }
    OK(ss_runtime_free(rt));
    OK(ss_model_free(m));
    free(want);
    free(x.v);
    printf("threads: ok\n");
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: suite BINARY_CASE OTHER_WIDTH_CASE SWAP_CASE [GOLDEN_CASE...]\n");
        return 2;
    }
    CHECK(ss_api_version() == SS_API_VERSION);
    CHECK(strlen(ss_version()) > 0);
    CHECK(strcmp(ss_status_name(SS_STATUS_QUEUE_FULL), "SS_STATUS_QUEUE_FULL") == 0);
    CHECK(strcmp(ss_last_error(), "") == 0);
    for (int i = 4; i < argc; i++) golden(argv[i]);
    printf("golden: %d cases ok\n", argc - 4);
    misuse_model(argv[1]);
    runtime_calls(argv[1], argv[2], argv[3]);
    threads(argv[1]);
    printf("c suite: %d checks passed\n", checks);
    return 0;
}
