/*
 * vreduce.h - sixteen eight-lane sums at once, in plain GCC/Clang vector
 * arithmetic: the CPU attention kernel's scores (two rows' eight keys)
 * and the 512-bit float tiles' outputs (a token's sixteen rows).
 *
 * A 64-byte vector holds two eight-lane accumulators, one a half.  The
 * sum of eight lanes l0..l7 is taken in one order everywhere:
 *
 *     ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
 *
 * which is matmul_avx2.h's hsum8 (the halves added, then the halves of
 * that, then the two lanes left) and attention.c's reduce8, so a sum
 * formed here has their bits.  reduce16(d), d[8] such vectors, gives
 * lane i the sum of d[i]'s low half and lane 8 + i the sum of its high
 * half, with 21 shuffles and adds in place of sixteen horizontal sums:
 *   h(k) = l_k + l_(k+4):  u_p = [h of d[p] | h of d[p+4]] per half
 *   a = h(0) + h(2), b = h(1) + h(3):  w0 = d 0 1 | 4 5, w1 = 2 3 | 6 7
 *   lane = a + b
 * A macro: a function passing 64-byte vectors changes the ABI where
 * AVX-512 is not enabled.  Use it only in code built for AVX-512.
 */
#ifndef LLAMAD_CPU_VREDUCE_H
#define LLAMAD_CPU_VREDUCE_H

typedef float v16f __attribute__((vector_size(64)));

/* An eight-lane pattern applied in each half: index i < 8 of a
   two-operand pattern names a's lane i, 8 + i b's. */
#define VR_HX(i, h) ((i) < 8 ? (i) + 8 * (h) : (i) + 8 + 8 * (h))
#define VR_SH16(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shufflevector((a), (b), \
        VR_HX(i0, 0), VR_HX(i1, 0), VR_HX(i2, 0), VR_HX(i3, 0), VR_HX(i4, 0), VR_HX(i5, 0), VR_HX(i6, 0), VR_HX(i7, 0), \
        VR_HX(i0, 1), VR_HX(i1, 1), VR_HX(i2, 1), VR_HX(i3, 1), VR_HX(i4, 1), VR_HX(i5, 1), VR_HX(i6, 1), VR_HX(i7, 1))
#define VR_REDUCE_U16(d, p) (VR_SH16(d[p], d[(p) + 4], 0, 1, 2, 3, 8, 9, 10, 11) \
                          + VR_SH16(d[p], d[(p) + 4], 4, 5, 6, 7, 12, 13, 14, 15))
#define VR_REDUCE_W16(u, v) (VR_SH16(u, v, 0, 1, 8, 9, 4, 5, 12, 13) + VR_SH16(u, v, 2, 3, 10, 11, 6, 7, 14, 15))
#define reduce16(d) __extension__({                                                   \
        v16f u0_ = VR_REDUCE_U16(d, 0), u1_ = VR_REDUCE_U16(d, 1), u2_ = VR_REDUCE_U16(d, 2),  \
             u3_ = VR_REDUCE_U16(d, 3);                                                  \
        v16f w0_ = VR_REDUCE_W16(u0_, u1_), w1_ = VR_REDUCE_W16(u2_, u3_);                  \
        VR_SH16(w0_, w1_, 0, 2, 8, 10, 4, 6, 12, 14) + VR_SH16(w0_, w1_, 1, 3, 9, 11, 5, 7, 13, 15); \
    })

#endif
