/* fp32 peak of one core, measured: independent FMA chains, enough of them to cover the FMA
 * latency on every pipe, so the loop is bound by FMA throughput alone. `make bench` compiles
 * it with gcc and runs one copy per core at once.
 * Usage: fma_peak avx2|avx512 SECONDS  -> prints GFLOP/s */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx2,fma"))) static double run_avx2(double seconds) {
    __m256 acc[CHAINS];
    __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    long iters = 0;
    double start = now(), elapsed;
    do {
        for (int k = 0; k < 100000; k++)
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
        iters += 100000;
        elapsed = now() - start;
    } while (elapsed < seconds);
    float sink = 0;
    for (int i = 0; i < CHAINS; i++) sink += _mm256_cvtss_f32(acc[i]);
    if (sink == 12345.0f) puts("");
    return iters * (double)CHAINS * 8 * 2 / elapsed / 1e9;
}

__attribute__((target("avx512f"))) static double run_avx512(double seconds) {
    __m512 acc[CHAINS];
    __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    long iters = 0;
    double start = now(), elapsed;
    do {
        for (int k = 0; k < 100000; k++)
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        iters += 100000;
        elapsed = now() - start;
    } while (elapsed < seconds);
    float sink = 0;
    for (int i = 0; i < CHAINS; i++) sink += _mm512_reduce_add_ps(acc[i]);
    if (sink == 12345.0f) puts("");
    return iters * (double)CHAINS * 16 * 2 / elapsed / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (argc > 1 && strcmp(argv[1], "avx512") == 0)
        printf("%.1f\n", run_avx512(seconds));
    else
        printf("%.1f\n", run_avx2(seconds));
    return 0;
}
