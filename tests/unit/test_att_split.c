/*
 * test_att_split.c - the split arithmetic of CUDA decode attention
 * (cuda/att_split.h), checked on the host over many shapes: every key of
 * every token falls in exactly one split the grid has, splits past a
 * token's keys start past them (their blocks exit), the merge's count of
 * splits matches, the partials fit the workspace sized at start, a CUDA
 * graph's choice depends on the padded size alone, and a step that can
 * split reaches the block count it aims at.  The kernels themselves are
 * checked against the CPU backend on a GPU (tests/gpu/test_cuda.c).
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../cuda/att_split.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t pick(uint32_t lo, uint32_t hi)  /* in [lo, hi] */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (uint32_t)(rng % ((uint64_t)hi - lo + 1));
}

static const uint32_t sms[] = { 1, 7, 80, 108, 132, 144 };
static const uint32_t kvs[] = { 1, 2, 4, 8, 32, 64 };

/* One token of n_keys keys in a grid of s: coverage, exits and the merge's count. */
static void check_token(att_split_t s, uint32_t n_keys)
{
    uint32_t sl = att_split_keys(s, n_keys);
    ASSERT_MSG(sl > 0, "split length 0 (n_splits %u, n_keys %u)", s.n_splits, n_keys);
    uint64_t used = ((uint64_t)n_keys + sl - 1) / sl;   /* the splits the merge reads */
    ASSERT_MSG(used >= 1 && used <= s.n_splits, "%llu splits needed, the grid has %u (split %u, keys %u)",
               (unsigned long long)used, s.n_splits, sl, n_keys);
    /* splits [0, used) cover [0, n_keys) without gaps: each starts where the last ended */
    ASSERT_MSG((used - 1) * sl < n_keys && used * sl >= n_keys, "splits do not tile %u keys by %u", n_keys, sl);
    /* the grid's other splits start past the keys */
    for (uint64_t k = used; k < s.n_splits; k++)
        ASSERT_MSG(k * sl >= n_keys, "split %llu of %u starts inside %u keys", (unsigned long long)k, s.n_splits,
                   n_keys);
}

TEST(eager_splits_cover_fit_and_fill)
{
    for (int it = 0; it < 200000; it++) {
        uint32_t n_sms = sms[pick(0, 5)], n_kv = kvs[pick(0, 5)], group = pick(1, 8);
        uint32_t hd = pick(0, 1) ? 64 : 128, max_tokens = pick(1, 4096);
        uint32_t max_ctx = pick(0, 3) ? pick(1, 8192) : pick(1, 1u << 17);
        uint32_t n_tokens = pick(1, max_tokens < 600 ? max_tokens : 600);
        uint32_t max_keys = pick(1, max_ctx);
        att_split_t s = att_choose_splits(n_tokens, n_kv, n_sms, max_keys, 0);
        ASSERT_MSG(s.n_splits >= 1, "no split");
        if (s.n_splits == 1) {
            ASSERT_MSG(s.split_len >= max_keys, "one split of %u keys for %u", s.split_len, max_keys);
        } else {
            ASSERT_MSG(s.split_len > 0 && s.split_len % 16 == 0, "split length %u", s.split_len);
            uint64_t need = (uint64_t)n_tokens * group * n_kv * s.n_splits * (hd + 2);
            uint64_t have = att_work_floats(n_sms, n_kv, group * n_kv, hd, max_tokens, max_ctx);
            ASSERT_MSG(need <= have, "partials %llu floats > workspace %llu (tokens %u, kv %u, sms %u, splits %u)",
                       (unsigned long long)need, (unsigned long long)have, n_tokens, n_kv, n_sms, s.n_splits);
        }
        /* the longest context and a few shorter ones */
        check_token(s, max_keys);
        for (int k = 0; k < 3; k++)
            check_token(s, pick(1, max_keys));
        /* the aim: about n_sms * ATT_BLOCKS_PER_SM blocks (split lengths rounded up to 16 keys may
           lose a ninth of them), or as many splits as the longest context has 256-key pieces */
        uint64_t pairs = (uint64_t)n_tokens * n_kv, want = (uint64_t)n_sms * ATT_BLOCKS_PER_SM;
        uint64_t pieces = (max_keys + ATT_SPLIT_MIN - 1) / ATT_SPLIT_MIN;
        uint64_t blocks = pairs * s.n_splits;
        ASSERT_MSG(9 * blocks >= 8 * want || 9 * s.n_splits >= 8 * pieces,
                   "%llu blocks, aim %llu, %u splits of %llu pieces", (unsigned long long)blocks,
                   (unsigned long long)want, s.n_splits, (unsigned long long)pieces);
        ASSERT_MSG(s.n_splits == 1 || pairs * s.n_splits < 2 * want, "%llu blocks for an aim of %llu",
                   (unsigned long long)(pairs * s.n_splits), (unsigned long long)want);
    }
}

TEST(graph_splits_depend_on_size_alone)
{
    for (int it = 0; it < 100000; it++) {
        uint32_t n_sms = sms[pick(0, 5)], n_kv = kvs[pick(0, 5)], group = pick(1, 8);
        uint32_t hd = pick(0, 1) ? 64 : 128, max_tokens = pick(1, 512);
        uint32_t max_ctx = pick(0, 3) ? pick(1, 8192) : pick(1, 1u << 17);
        uint32_t g = (max_ctx + ATT_SPLIT_MIN - 1) / ATT_SPLIT_MIN;
        if (g > 32)
            g = 32;
        uint32_t size = pick(1, max_tokens < 256 ? max_tokens : 256);
        att_split_t s = att_choose_splits(size, n_kv, n_sms, pick(1, max_ctx), g);
        att_split_t t = att_choose_splits(size, n_kv, n_sms, pick(1, max_ctx), g);
        ASSERT_MSG(s.split_len == t.split_len && s.n_splits == t.n_splits, "the choice moved with the context");
        ASSERT_MSG(s.n_splits >= 1 && s.n_splits <= g, "%u splits, at most %u", s.n_splits, g);
        ASSERT_MSG(s.n_splits == 1 ? s.split_len == ATT_NO_SPLIT : s.split_len == 0, "split length %u", s.split_len);
        if (s.n_splits > 1) {
            uint64_t need = (uint64_t)size * group * n_kv * s.n_splits * (hd + 2);
            uint64_t have = att_work_floats(n_sms, n_kv, group * n_kv, hd, max_tokens, max_ctx);
            ASSERT_MSG(need <= have, "partials %llu floats > workspace %llu", (unsigned long long)need,
                       (unsigned long long)have);
        }
        /* any context a replay may see, up to max_ctx */
        check_token(s, max_ctx);
        for (int k = 0; k < 3; k++)
            check_token(s, pick(1, max_ctx));
    }
}

TEST(the_first_rounds_shape)
{
    /* batch 16 of a 32-KV-head model at context 2048 on 132 SMs: split 3 ways (1536 blocks) */
    att_split_t s = att_choose_splits(16, 32, 132, 2048, 0);
    ASSERT_EQ_INT(s.n_splits, 3);
    ASSERT_EQ_INT(s.split_len, 688);
    /* batch 1 at context 512: both 256-key pieces; at context 100: none */
    s = att_choose_splits(1, 8, 132, 512, 0);
    ASSERT_EQ_INT(s.n_splits, 2);
    s = att_choose_splits(1, 8, 132, 100, 0);
    ASSERT_EQ_INT(s.n_splits, 1);
    /* enough pairs to fill the GPU (132 tokens x 8 KV heads = 1056 blocks): no split however long */
    s = att_choose_splits(132, 8, 132, 100000, 0);
    ASSERT_EQ_INT(s.n_splits, 1);
    s = att_choose_splits(131, 8, 132, 100000, 0);   /* one token fewer: two splits */
    ASSERT_EQ_INT(s.n_splits, 2);
}

TEST_LIST(T(eager_splits_cover_fit_and_fill), T(graph_splits_depend_on_size_alone), T(the_first_rounds_shape))
