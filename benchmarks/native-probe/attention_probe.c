// An independent C implementation of one decode step of grouped attention, used to check whether the
// attention-floor miss of the library's .NET kernel is .NET's or this machine's (docs/adr-claims.md, ADR 0011).
//
// Shape: GQA-8 of the report's section 2 at 4096 tokens, batch 1: 8 KV heads x 4096 rows x 128 floats of K and of V
// (32 MiB), 4 query heads per KV head, float32, two threads (one per core, 4 KV heads each). Every timed call follows
// an untimed read of 256 MiB, so K/V comes from memory. Variants run in rotating order within each round; the floor
// (KV bytes / the read bandwidth of a two-thread sequential sum over 1 GiB) is measured in the same rounds, and each
// figure is a median over rounds. Scores are reduced but not exponentiated (the softmax is a fixed scale), so the
// arithmetic is the kernel's multiply-adds and loads, a little less than the real kernel's. It is a timing probe: no
// result is checked, and the split variant (K on one core, V on the other) does not wait for the scores it reads.
//
// Build and run: benchmarks/native-probe/run.sh (gcc -O3 -march=native). Not part of CI or the NuGet package.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HEADS 8
#define T 4096
#define D 128
#define BLOCK 32
#define HEAD_BYTES ((long)T * D * 4)
#define BIG_BYTES (1L << 30)
#define FLUSH_BYTES (256L << 20)
#define ROUNDS 21

static float *keys, *values, *flush_buffer, *big;
static float queries[2][4 * D] __attribute__((aligned(64)));
static float outputs[2][4 * D] __attribute__((aligned(64)));
static float lane_operands[4 * D] __attribute__((aligned(64)));
static volatile float sink;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static inline void fetch(const float* p) { _mm_prefetch((const char*)p, _MM_HINT_T1); }

// --- read-only patterns --------------------------------------------------------------------------------------------

// Sequential read of n floats with `work` arithmetic per 64-byte line: 0 = one add (four chains), 1 = four FMAs on registers,
// 2 = four FMAs whose other operand is loaded from L1 (as the kernel's queries are).
static void stream(const float* p, long n, int work, long prefetch_bytes)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, m = _mm512_set1_ps(1.0001f);
    if (work == 0)
    {
        for (long i = 0; i < n; i += 64)
        {
            a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i)); a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
            a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32)); a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
        }
        sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        return;
    }
    for (long i = 0; i < n; i += 16)
    {
        if (prefetch_bytes) fetch(p + i + prefetch_bytes / 4);
        __m512 x = _mm512_load_ps(p + i);
        if (work == 1)
        {
            a0 = _mm512_fmadd_ps(x, m, a0); a1 = _mm512_fmadd_ps(x, m, a1);
            a2 = _mm512_fmadd_ps(x, m, a2); a3 = _mm512_fmadd_ps(x, m, a3);
        }
        else
        {
            const float* q = lane_operands + (i & (D - 1));
            a0 = _mm512_fmadd_ps(x, _mm512_load_ps(q), a0); a1 = _mm512_fmadd_ps(x, _mm512_load_ps(q + D), a1);
            a2 = _mm512_fmadd_ps(x, _mm512_load_ps(q + 2 * D), a2); a3 = _mm512_fmadd_ps(x, _mm512_load_ps(q + 3 * D), a3);
        }
    }
    sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// --- attention ---------------------------------------------------------------------------------------------------------

// One block of K rows scored against the 4 queries, one row at a time, queries loaded from L1.
static void score_block(const float* k, const float* q, float* scores, int n, long prefetch_bytes)
{
    for (int r = 0; r < n; r++)
    {
        const float* key = k + (long)r * D;
        if (prefetch_bytes) for (int line = 0; line < D; line += 16) fetch(key + line + prefetch_bytes / 4);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < D; c += 16)
        {
            __m512 x = _mm512_load_ps(key + c);
            a0 = _mm512_fmadd_ps(x, _mm512_load_ps(q + c), a0); a1 = _mm512_fmadd_ps(x, _mm512_load_ps(q + D + c), a1);
            a2 = _mm512_fmadd_ps(x, _mm512_load_ps(q + 2 * D + c), a2); a3 = _mm512_fmadd_ps(x, _mm512_load_ps(q + 3 * D + c), a3);
        }
        scores[4 * r] = _mm512_reduce_add_ps(a0) * 1e-3f; scores[4 * r + 1] = _mm512_reduce_add_ps(a1) * 1e-3f;
        scores[4 * r + 2] = _mm512_reduce_add_ps(a2) * 1e-3f; scores[4 * r + 3] = _mm512_reduce_add_ps(a3) * 1e-3f;
    }
}

// The same with two queries held in registers per pass (the second pass reads the block from L1).
static void score_block_registers(const float* k, const float* q, float* scores, int n, long prefetch_bytes)
{
    for (int j = 0; j < 4; j += 2)
    {
        __m512 qa[8], qb[8];
        for (int c = 0; c < 8; c++) { qa[c] = _mm512_load_ps(q + j * D + 16 * c); qb[c] = _mm512_load_ps(q + (j + 1) * D + 16 * c); }
        for (int r = 0; r < n; r++)
        {
            const float* key = k + (long)r * D;
            if (prefetch_bytes && j == 0) for (int line = 0; line < D; line += 16) fetch(key + line + prefetch_bytes / 4);
            __m512 a = _mm512_setzero_ps(), b = a;
            for (int c = 0; c < 8; c++) { __m512 x = _mm512_load_ps(key + 16 * c); a = _mm512_fmadd_ps(x, qa[c], a); b = _mm512_fmadd_ps(x, qb[c], b); }
            scores[4 * r + j] = _mm512_reduce_add_ps(a) * 1e-3f;
            scores[4 * r + j + 1] = _mm512_reduce_add_ps(b) * 1e-3f;
        }
    }
}

// One block of V rows accumulated for the 4 queries: two queries x 128 outputs in registers per pass, whole rows.
static void accumulate_pairs(const float* v, const float* w, float* out, int n, long prefetch_bytes)
{
    for (int j = 0; j < 4; j += 2)
    {
        __m512 a[8], b[8];
        for (int c = 0; c < 8; c++) { a[c] = _mm512_load_ps(out + j * D + 16 * c); b[c] = _mm512_load_ps(out + (j + 1) * D + 16 * c); }
        for (int r = 0; r < n; r++)
        {
            const float* row = v + (long)r * D;
            if (prefetch_bytes && j == 0) for (int line = 0; line < D; line += 16) fetch(row + line + prefetch_bytes / 4);
            __m512 wa = _mm512_set1_ps(w[4 * r + j]), wb = _mm512_set1_ps(w[4 * r + j + 1]);
            for (int c = 0; c < 8; c++) { __m512 x = _mm512_load_ps(row + 16 * c); a[c] = _mm512_fmadd_ps(wa, x, a[c]); b[c] = _mm512_fmadd_ps(wb, x, b[c]); }
        }
        for (int c = 0; c < 8; c++) { _mm512_store_ps(out + j * D + 16 * c, a[c]); _mm512_store_ps(out + (j + 1) * D + 16 * c, b[c]); }
    }
}

// The library's value tiling: 4 queries x 64 outputs in registers, the block's rows in two half-row passes.
static void accumulate_halves(const float* v, const float* w, float* out, int n, long prefetch_bytes)
{
    for (int h = 0; h < 2; h++)
    {
        __m512 acc[4][4];
        for (int j = 0; j < 4; j++) for (int c = 0; c < 4; c++) acc[j][c] = _mm512_load_ps(out + j * D + h * 64 + 16 * c);
        for (int r = 0; r < n; r++)
        {
            const float* row = v + (long)r * D;
            if (prefetch_bytes && h == 0) for (int line = 0; line < D; line += 16) fetch(row + line + prefetch_bytes / 4);
            for (int j = 0; j < 4; j++)
            {
                __m512 weight = _mm512_set1_ps(w[4 * r + j]);
                for (int c = 0; c < 4; c++) acc[j][c] = _mm512_fmadd_ps(weight, _mm512_load_ps(row + h * 64 + 16 * c), acc[j][c]);
            }
        }
        for (int j = 0; j < 4; j++) for (int c = 0; c < 4; c++) _mm512_store_ps(out + j * D + h * 64 + 16 * c, acc[j][c]);
    }
}

// --- variants ------------------------------------------------------------------------------------------------------

enum { FLOOR, READ_ADD, READ_FMA_REGISTERS, READ_FMA_L1, KERNEL_LIBRARY_ORDER, KERNEL_ROWS, KERNEL_ROWS_PREFETCH,
       KERNEL_QUERIES_IN_REGISTERS, KERNEL_SPLIT_K_V, VARIANTS };
static const char* names[VARIANTS] = {
    "floor: 2-thread sum over 1 GiB",
    "read K/V, one add per line",
    "read K/V, 4 FMAs per line (registers)",
    "read K/V, 4 FMAs per line (L1 operands)",
    "attention, library order (4x64 V tiles, prefetch 1 block)",
    "attention, whole rows, no prefetch",
    "attention, whole rows, prefetch 1 block",
    "attention, 2 queries in registers per pass",
    "attention, K on one core, V on the other",
};

static int variant;
static float split_weights[HEADS][4 * T];

static void attend_head(int h, float* out, const float* q)
{
    const float* k = keys + (long)h * T * D;
    const float* v = values + (long)h * T * D;
    float scores[4 * BLOCK] __attribute__((aligned(64)));
    memset(out, 0, 4 * D * sizeof(float));
    long ahead = (long)BLOCK * D * 4;
    for (int t0 = 0; t0 < T; t0 += BLOCK)
    {
        const float* kb = k + (long)t0 * D;
        const float* vb = v + (long)t0 * D;
        long pf = t0 + 2 * BLOCK <= T && (variant == KERNEL_LIBRARY_ORDER || variant == KERNEL_ROWS_PREFETCH) ? ahead : 0;
        if (variant == KERNEL_QUERIES_IN_REGISTERS) score_block_registers(kb, q, scores, BLOCK, 0);
        else score_block(kb, q, scores, BLOCK, pf);
        if (variant == KERNEL_LIBRARY_ORDER) accumulate_halves(vb, scores, out, BLOCK, pf);
        else accumulate_pairs(vb, scores, out, BLOCK, pf);
    }
}

static void work(int thread)
{
    long per_thread = (long)HEADS / 2 * T * D;
    switch (variant)
    {
    case FLOOR: stream(big + thread * (BIG_BYTES / 8), BIG_BYTES / 8, 0, 0); break;
    case READ_ADD: case READ_FMA_REGISTERS: case READ_FMA_L1:
        stream(keys + thread * per_thread, per_thread, variant - READ_ADD, 0);
        stream(values + thread * per_thread, per_thread, variant - READ_ADD, 0);
        break;
    case KERNEL_SPLIT_K_V:
        for (int h = 0; h < HEADS; h++)
        {
            if (thread == 0)
                for (int t0 = 0; t0 < T; t0 += BLOCK)
                    score_block(keys + ((long)h * T + t0) * D, queries[0], split_weights[h] + 4 * t0, BLOCK, 0);
            else
                for (int t0 = 0; t0 < T; t0 += BLOCK)
                    accumulate_pairs(values + ((long)h * T + t0) * D, split_weights[h] + 4 * t0, outputs[1], BLOCK, 0);
        }
        break;
    default:
        for (int h = thread * HEADS / 2; h < (thread + 1) * HEADS / 2; h++) attend_head(h, outputs[thread], queries[thread]);
    }
}

// --- two threads that stay awake between calls ------------------------------------------------------------------------
static volatile int started, finished;
static void* helper(void* unused)
{
    (void)unused;
    for (int seen = 0;;)
    {
        while (started == seen) _mm_pause();
        seen = started;
        work(1);
        __atomic_add_fetch(&finished, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}
static double timed(void)
{
    int before = finished;
    double t = now();
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    work(0);
    while (finished == before) _mm_pause();
    return now() - t;
}
static void flush(void)
{
    __m512 s = _mm512_setzero_ps();
    for (long i = 0; i < FLUSH_BYTES / 4; i += 16) s = _mm512_add_ps(s, _mm512_load_ps(flush_buffer + i));
    sink = _mm512_reduce_add_ps(s);
}
static int compare(const void* a, const void* b) { double x = *(const double*)a, y = *(const double*)b; return (x > y) - (x < y); }

int main(void)
{
    keys = aligned_alloc(4096, HEADS * HEAD_BYTES);
    values = aligned_alloc(4096, HEADS * HEAD_BYTES);
    flush_buffer = aligned_alloc(4096, FLUSH_BYTES);
    big = aligned_alloc(4096, BIG_BYTES);
    for (long i = 0; i < HEADS * HEAD_BYTES / 4; i++) { keys[i] = (float)(i % 7) * 0.01f; values[i] = (float)(i % 5) * 0.01f; }
    for (int i = 0; i < 4 * D; i++) { queries[0][i] = queries[1][i] = lane_operands[i] = 0.01f * (float)(i % 3); }
    memset(flush_buffer, 1, FLUSH_BYTES);
    memset(big, 2, BIG_BYTES);
    pthread_t thread;
    pthread_create(&thread, NULL, helper, NULL);

    static double times[VARIANTS][ROUNDS], ratios[VARIANTS][ROUNDS];
    for (int r = 0; r < ROUNDS; r++)
    {
        double round[VARIANTS];
        for (int i = 0; i < VARIANTS; i++)
        {
            variant = (i + r) % VARIANTS;
            flush();
            round[variant] = timed();
        }
        double floor_s = 2.0 * HEADS * HEAD_BYTES / (BIG_BYTES / round[FLOOR]);
        for (int i = 0; i < VARIANTS; i++) { times[i][r] = round[i]; ratios[i][r] = round[i] / floor_s; }
    }
    for (int i = 0; i < VARIANTS; i++) { qsort(times[i], ROUNDS, sizeof(double), compare); qsort(ratios[i], ROUNDS, sizeof(double), compare); }
    double bandwidth = BIG_BYTES / times[FLOOR][ROUNDS / 2] / 1e9;
    printf("read bandwidth %.1f GB/s (median of %d rounds); K/V %.0f MiB, floor %.3f ms\n", bandwidth, ROUNDS,
           2.0 * HEADS * HEAD_BYTES / (1 << 20), 2.0 * HEADS * HEAD_BYTES / bandwidth / 1e6);
    printf("%-58s %10s %10s\n", "variant", "median ms", "x floor");
    for (int i = 1; i < VARIANTS; i++) printf("%-58s %10.3f %10.2f\n", names[i], times[i][ROUNDS / 2] * 1e3, ratios[i][ROUNDS / 2]);
    return 0;
}
