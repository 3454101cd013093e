/*
 * bench-pipes: how many 512-bit vector operations of each kind the core
 * issues a cycle, alone and two kinds mixed, so that a kernel's count of
 * operations per weight can be turned into a bound in weights a cycle.
 *
 * Each test runs eight independent operations a loop iteration for 50
 * million iterations.  The inputs are made opaque to the compiler every
 * iteration (an empty asm that may have changed them) and the outputs
 * consumed, so nothing is hoisted out of the loop or merged; no output
 * feeds the next iteration, so latency does not enter.  An operation
 * that overwrites a source (fused multiply-add, vpermt2ps, ternary
 * logic, a merge-masked permute, vpdpbusd) takes a register copy first,
 * which cores with move elimination retire at rename.  A mix "FFFFPPPP"
 * is four of F and four of P.  The clock comes from a chain of
 * dependent integer adds (one cycle each on every AVX-512 core), timed
 * the same way; where a core lowers its clock for 512-bit work, the
 * figures read low by that ratio.
 *
 * Reading a mix of two kinds that each reach 2.0 a cycle alone: 4.0 means
 * they share no unit; 2.0 that they issue to the same units; between,
 * that they share some.
 *
 *   F  vfmadd (ps)            A  vaddps                C  vcvtdq2ps / vcvtudq2ps
 *   P  vpermt2ps              V  vpermps               H  vpshufb
 *   L  vpternlogd             B  vpsrlw                Z  vpmovzxbd / vpmovsxbd
 *   N  vpandd                 D  vblendmps             E  vpermps, merge-masked
 *   Q  vpdpbusd (AVX512-VNNI; its mixes are left out where the CPU lacks it)
 * (each letter's first four operations use the first form, the last four
 * the second; the instructions are the build compiler's choice: check
 * with objdump -d).
 *
 * x86-64 with AVX-512 (F, BW) only; elsewhere it says so and exits 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define ITERS 50000000L

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define PT  __attribute__((target("avx512f,avx512bw,fma"), noinline))
#define PTQ __attribute__((target("avx512f,avx512bw,avx512vnni,fma"), noinline))

/* Cycles a second: eight dependent adds an iteration. */
static double clock_hz(void)
{
    uint64_t x = 0;
    double t = now();
    for (long n = 0; n < ITERS; n++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                         : "+r"(x));
    t = now() - t;
    return 8.0 * (double)ITERS / t;
}

/* Operation k (0..7) on input m (0..3); hi (0 for k < 4, else 1) picks a
 * second operand or form so that no two of the eight are the same. */
#define OP_F(k, m, hi) a##k = _mm512_fmadd_ps(t##m, hi ? W : U, T)
#define OP_A(k, m, hi) a##k = _mm512_add_ps(t##m, hi ? W : U)
#define OP_C(k, m, hi) a##k = hi ? _mm512_cvtepu32_ps(j##m) : _mm512_cvtepi32_ps(j##m)
#define OP_P(k, m, hi) a##k = _mm512_permutex2var_ps(t##m, j##m, hi ? W : U)
#define OP_V(k, m, hi) a##k = _mm512_permutexvar_ps(j##m, hi ? W : U)
#define OP_H(k, m, hi) i##k = _mm512_shuffle_epi8(j##m, hi ? R : S)
#define OP_L(k, m, hi) i##k = _mm512_ternarylogic_epi32(j##m, hi ? R : S, X, 0xea)
#define OP_B(k, m, hi) i##k = _mm512_srli_epi16(j##m, 4 - hi)
#define OP_N(k, m, hi) i##k = _mm512_and_si512(j##m, hi ? R : S)
#define OP_D(k, m, hi) a##k = _mm512_mask_blend_ps(0xff00, t##m, hi ? W : U)
#define OP_E(k, m, hi) a##k = _mm512_mask_permutexvar_ps(t##m, 0xff00, j##m, hi ? W : U)
#define OP_Q(k, m, hi) i##k = _mm512_dpbusd_epi32(j##m, hi ? R : S, X)
#define OP_Z(k, m, hi) \
    i##k = hi ? _mm512_cvtepi8_epi32(_mm512_castsi512_si128(j##m)) : _mm512_cvtepu8_epi32(_mm512_castsi512_si128(j##m))

#define MIX(name, o0, o1, o2, o3, o4, o5, o6, o7) MIX_T(PT, name, o0, o1, o2, o3, o4, o5, o6, o7)
#define MIX_T(attr, name, o0, o1, o2, o3, o4, o5, o6, o7)                                                   \
    attr static double mix_##name(void)                                                                    \
    {                                                                                                      \
        __m512 T = _mm512_set1_ps(0.5f), U = _mm512_set1_ps(0.25f), W = _mm512_set1_ps(0.75f);             \
        __m512i X = _mm512_set1_epi32(3), S = _mm512_set1_epi8(1), R = _mm512_set1_epi8(2);                \
        __m512 t0 = T, t1 = U, t2 = W, t3 = T;                                                             \
        __m512i j0 = X, j1 = S, j2 = R, j3 = X;                                                            \
        __m512 a0 = T, a1 = T, a2 = T, a3 = T, a4 = T, a5 = T, a6 = T, a7 = T;                             \
        __m512i i0 = X, i1 = X, i2 = X, i3 = X, i4 = X, i5 = X, i6 = X, i7 = X;                            \
        __asm__ volatile("" : "+v"(T), "+v"(U), "+v"(W), "+v"(X), "+v"(S), "+v"(R));                      \
        double t = now();                                                                                  \
        for (long n = 0; n < ITERS; n++) {                                                                 \
            __asm__ volatile("" : "+v"(t0), "+v"(t1), "+v"(t2), "+v"(t3), "+v"(j0), "+v"(j1), "+v"(j2),    \
                                  "+v"(j3));                                                               \
            OP_##o0(0, 0, 0);                                                                              \
            OP_##o1(1, 1, 0);                                                                              \
            OP_##o2(2, 2, 0);                                                                              \
            OP_##o3(3, 3, 0);                                                                              \
            OP_##o4(4, 0, 1);                                                                              \
            OP_##o5(5, 1, 1);                                                                              \
            OP_##o6(6, 2, 1);                                                                              \
            OP_##o7(7, 3, 1);                                                                              \
            __asm__ volatile("" ::"v"(a0), "v"(a1), "v"(a2), "v"(a3), "v"(a4), "v"(a5), "v"(a6), "v"(a7)); \
            __asm__ volatile("" ::"v"(i0), "v"(i1), "v"(i2), "v"(i3), "v"(i4), "v"(i5), "v"(i6), "v"(i7)); \
        }                                                                                                  \
        return now() - t;                                                                                  \
    }

MIX(FFFFFFFF, F, F, F, F, F, F, F, F)
MIX(AAAAAAAA, A, A, A, A, A, A, A, A)
MIX(CCCCCCCC, C, C, C, C, C, C, C, C)
MIX(PPPPPPPP, P, P, P, P, P, P, P, P)
MIX(VVVVVVVV, V, V, V, V, V, V, V, V)
MIX(HHHHHHHH, H, H, H, H, H, H, H, H)
MIX(LLLLLLLL, L, L, L, L, L, L, L, L)
MIX(BBBBBBBB, B, B, B, B, B, B, B, B)
MIX(ZZZZZZZZ, Z, Z, Z, Z, Z, Z, Z, Z)
MIX(FFFFAAAA, F, F, F, F, A, A, A, A)
MIX(FFFFCCCC, F, F, F, F, C, C, C, C)
MIX(FFFFPPPP, F, F, F, F, P, P, P, P)
MIX(FFFFVVVV, F, F, F, F, V, V, V, V)
MIX(FFFFHHHH, F, F, F, F, H, H, H, H)
MIX(FFFFLLLL, F, F, F, F, L, L, L, L)
MIX(FFFFBBBB, F, F, F, F, B, B, B, B)
MIX(PPPPHHHH, P, P, P, P, H, H, H, H)
MIX(VVVVHHHH, V, V, V, V, H, H, H, H)
MIX(CCCCHHHH, C, C, C, C, H, H, H, H)
MIX(LLLLHHHH, L, L, L, L, H, H, H, H)
MIX(ZZZZHHHH, Z, Z, Z, Z, H, H, H, H)
MIX(NNNNNNNN, N, N, N, N, N, N, N, N)
MIX(DDDDDDDD, D, D, D, D, D, D, D, D)
MIX(EEEEEEEE, E, E, E, E, E, E, E, E)
MIX(FFFFNNNN, F, F, F, F, N, N, N, N)
MIX(FFFFDDDD, F, F, F, F, D, D, D, D)
MIX(FFFFEEEE, F, F, F, F, E, E, E, E)
MIX(HHHHNNNN, H, H, H, H, N, N, N, N)
MIX(HHHHDDDD, H, H, H, H, D, D, D, D)
MIX(FFCCHHBB, F, F, C, C, H, H, B, B)
MIX_T(PTQ, QQQQQQQQ, Q, Q, Q, Q, Q, Q, Q, Q)
MIX_T(PTQ, FFFFQQQQ, F, F, F, F, Q, Q, Q, Q)
MIX_T(PTQ, QQQQCCCC, Q, Q, Q, Q, C, C, C, C)
MIX_T(PTQ, QQQQHHHH, Q, Q, Q, Q, H, H, H, H)
MIX_T(PTQ, QQQQNNNN, Q, Q, Q, Q, N, N, N, N)

static const struct {
    const char *name;
    double (*run)(void);
    int vnni;
} mixes[] = {
#define ROW(n)  { #n, mix_##n, 0 }
#define ROWQ(n) { #n, mix_##n, 1 }
    ROW(FFFFFFFF), ROW(AAAAAAAA), ROW(CCCCCCCC), ROW(PPPPPPPP), ROW(VVVVVVVV), ROW(HHHHHHHH),
    ROW(LLLLLLLL), ROW(BBBBBBBB), ROW(ZZZZZZZZ), ROW(FFFFAAAA), ROW(FFFFCCCC), ROW(FFFFPPPP),
    ROW(FFFFVVVV), ROW(FFFFHHHH), ROW(FFFFLLLL), ROW(FFFFBBBB), ROW(PPPPHHHH), ROW(VVVVHHHH),
    ROW(CCCCHHHH), ROW(LLLLHHHH), ROW(ZZZZHHHH), ROW(NNNNNNNN), ROW(DDDDDDDD), ROW(EEEEEEEE),
    ROW(FFFFNNNN), ROW(FFFFDDDD), ROW(FFFFEEEE), ROW(HHHHNNNN), ROW(HHHHDDDD), ROW(FFCCHHBB),
    ROWQ(QQQQQQQQ), ROWQ(FFFFQQQQ), ROWQ(QQQQCCCC), ROWQ(QQQQHHHH), ROWQ(QQQQNNNN),
#undef ROW
#undef ROWQ
};

int main(int argc, char **argv)
{
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "usage: %s\n(512-bit operations a cycle by kind; see the top of bench/bench_pipes.c)\n", argv[0]);
        return help ? 0 : 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
        printf("bench-pipes: this CPU lacks AVX-512 (F, BW); nothing to measure\n");
        return 0;
    }
    const int vnni = __builtin_cpu_supports("avx512vnni");
    double hz = clock_hz();
    printf("clock from dependent adds: %.2f GHz\n", hz * 1e-9);
    printf("%-10s %10s %12s\n", "mix", "ns/iter", "ops/cycle");
    for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
        if (mixes[m].vnni && !vnni) {
            printf("%-10s %10s %12s\n", mixes[m].name, "-", "(no VNNI)");
            continue;
        }
        double t = mixes[m].run();
        printf("%-10s %10.3f %12.2f\n", mixes[m].name, 1e9 * t / (double)ITERS, 8.0 * (double)ITERS / (t * hz));
    }
    return 0;
}

#else

int main(void)
{
    printf("bench-pipes: x86-64 with AVX-512 only; nothing to measure here\n");
    return 0;
}

#endif
