/*
 * test_kvcache.c - the KV block manager: SHA-256 against the FIPS 180-2
 * example vectors, block accounting, reference counts, prefix matching,
 * eviction order, and a randomised run checked against a model of the
 * pool kept here (who holds which block, and with what tokens).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/sched/kvcache.h"
#include "base/sha256.h"
#include "test.h"

static const uint8_t SEED[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static void hex(const uint8_t *d, char *out)
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* FIPS 180-2 appendix B: "abc", the two-block message, a million 'a'; and the empty string. */
TEST(sha256_matches_fips_examples)
{
    uint8_t d[32];
    char h[65];
    sha256("abc", 3, d);
    hex(d, h);
    ASSERT_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256("", 0, d);
    hex(d, h);
    ASSERT_EQ_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(m2, strlen(m2), d);
    hex(d, h);
    ASSERT_EQ_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces to exercise the buffering */
    static char a[1000];
    memset(a, 'a', sizeof a);
    sha256_t s;
    sha256_init(&s);
    size_t left = 1000000, piece = 1;
    while (left > 0) {
        size_t n = piece < left ? piece : left;
        if (n > sizeof a)
            n = sizeof a;
        sha256_update(&s, a, n);
        left -= n;
        piece = piece * 7 % 997 + 1;
    }
    sha256_final(&s, d);
    hex(d, h);
    ASSERT_EQ_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static kv_cache_t *make_kv(uint32_t n_blocks, uint32_t B, int prefix)
{
    char err[ERR_MSG_MAX];
    kv_cache_t *kv;
    kv_opts_t o = { n_blocks, B, prefix, SEED };
    ASSERT_MSG(kv_create(&kv, &o, err, sizeof err) == 0, "%s", err);
    return kv;
}

static void check(const kv_cache_t *kv)
{
    char err[ERR_MSG_MAX];
    ASSERT_MSG(kv_check(kv, err, sizeof err) == 0, "%s", err);
}

static void seq_new(kv_cache_t *kv, kv_seq_t *q, uint32_t max_tokens, const char *salt)
{
    ASSERT_EQ_INT(kv_seq_init(q, max_tokens, kv_block_tokens(kv)), 0);
    kv_seq_start(kv, q, salt, salt ? strlen(salt) : 0);
}

TEST(create_rejects_empty_pools)
{
    char err[ERR_MSG_MAX];
    kv_cache_t *kv;
    kv_opts_t o = { 0, 16, 1, SEED };
    ASSERT_EQ_INT(kv_create(&kv, &o, err, sizeof err), ERR_INVALID);
    ASSERT(kv == NULL);
    o = (kv_opts_t){ 8, 0, 1, SEED };
    ASSERT_EQ_INT(kv_create(&kv, &o, err, sizeof err), ERR_INVALID);
    o = (kv_opts_t){ 8, 16, 1, NULL }; /* a random seed */
    ASSERT_EQ_INT(kv_create(&kv, &o, err, sizeof err), 0);
    kv_destroy(kv);
}

TEST(reserve_takes_whole_blocks_and_fails_atomically)
{
    kv_cache_t *kv = make_kv(10, 16, 1);
    kv_seq_t a, b;
    seq_new(kv, &a, 200, NULL);
    seq_new(kv, &b, 200, NULL);
    ASSERT_EQ_INT(kv_blocks_for(kv, 0), 0);
    ASSERT_EQ_INT(kv_blocks_for(kv, 16), 1);
    ASSERT_EQ_INT(kv_blocks_for(kv, 17), 2);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 17), 0);
    ASSERT_EQ_INT(a.n_blocks, 2);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 32), 0); /* still two */
    ASSERT_EQ_INT(a.n_blocks, 2);
    ASSERT_EQ_INT(kv_available(kv), 8);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &b, 16 * 9), ERR_FULL);
    ASSERT_EQ_INT(b.n_blocks, 0);
    ASSERT_EQ_INT(kv_available(kv), 8);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &b, 16 * 8), 0);
    ASSERT_EQ_INT(kv_available(kv), 0);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 33), ERR_FULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 16 * 13 + 1), ERR_RANGE); /* past its table */
    /* every block handed out once */
    int seen[10] = { 0 };
    for (uint32_t i = 0; i < a.n_blocks; i++)
        seen[a.blocks[i]]++;
    for (uint32_t i = 0; i < b.n_blocks; i++)
        seen[b.blocks[i]]++;
    for (int i = 0; i < 10; i++)
        ASSERT_EQ_INT(seen[i], 1);
    check(kv);
    kv_seq_release(kv, &a);
    kv_seq_release(kv, &b);
    ASSERT_EQ_INT(kv_available(kv), 10);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 0);
    ASSERT_EQ_INT(st.n_idle, 0); /* nothing was committed, so nothing is cached */
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_destroy(kv);
}

static void fill_tokens(int32_t *t, uint32_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = (int32_t)((seed * 2654435761u + i * 40503u) % 50000u);
}

TEST(prefix_match_shares_full_computed_blocks)
{
    kv_cache_t *kv = make_kv(16, 16, 1);
    int32_t t[100], u[100];
    fill_tokens(t, 100, 1);
    kv_seq_t a, b, c, d, e;
    seq_new(kv, &a, 100, NULL);
    ASSERT_EQ_INT(kv_seq_match(kv, &a, t, 40), 0); /* empty cache */
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 40), 0);
    kv_seq_commit(kv, &a, t, 20); /* one full block computed so far */
    kv_seq_commit(kv, &a, t, 40);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_published, 2); /* blocks 0 and 1; block 2 is partial */

    /* b: same 40 tokens, then different ones: shares blocks 0 and 1 while a holds them */
    memcpy(u, t, sizeof u);
    u[45] = 7;
    seq_new(kv, &b, 100, NULL);
    ASSERT_EQ_INT(kv_seq_match(kv, &b, u, 60), 32);
    ASSERT_EQ_INT(b.n_blocks, 2);
    ASSERT_EQ_INT(b.blocks[0], a.blocks[0]);
    ASSERT_EQ_INT(b.blocks[1], a.blocks[1]);
    ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[0]), 2);
    ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[2]), 1);
    /* b grows into its own blocks */
    ASSERT_EQ_INT(kv_seq_reserve(kv, &b, 60), 0);
    ASSERT(b.blocks[2] != a.blocks[2]);

    /* c: another salt sees nothing */
    seq_new(kv, &c, 100, "tenant-2");
    ASSERT_EQ_INT(kv_seq_match(kv, &c, t, 60), 0);
    /* d: differs at token 20, so only block 0 matches */
    memcpy(u, t, sizeof u);
    u[20] = 9;
    seq_new(kv, &d, 100, NULL);
    ASSERT_EQ_INT(kv_seq_match(kv, &d, u, 60), 16);
    /* e: exactly the 32 cached tokens: the last token must be computed, so one block */
    seq_new(kv, &e, 100, NULL);
    ASSERT_EQ_INT(kv_seq_match(kv, &e, t, 32), 16);
    check(kv);

    /* a goes: its shared blocks stay held by b, d, e; its own tail block is free */
    kv_seq_release(kv, &a);
    ASSERT_EQ_INT(kv_block_refs(kv, b.blocks[0]), 3);
    ASSERT_EQ_INT(kv_block_refs(kv, b.blocks[1]), 1);
    kv_seq_release(kv, &b);
    kv_seq_release(kv, &c);
    kv_seq_release(kv, &d);
    kv_seq_release(kv, &e);
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 0);
    ASSERT_EQ_INT(st.n_free, 16);
    ASSERT_EQ_INT(st.n_idle, 2); /* a's two published blocks; b's were never committed */
    check(kv);
    /* idle blocks are still matchable */
    ASSERT_EQ_INT(kv_seq_match(kv, &a, t, 100), 32);
    kv_seq_release(kv, &a);
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_seq_close(&c);
    kv_seq_close(&d);
    kv_seq_close(&e);
    kv_destroy(kv);
}

TEST(prefix_cache_off_never_shares)
{
    kv_cache_t *kv = make_kv(8, 16, 0);
    int32_t t[64];
    fill_tokens(t, 64, 3);
    kv_seq_t a, b;
    seq_new(kv, &a, 64, NULL);
    seq_new(kv, &b, 64, NULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 64), 0);
    kv_seq_commit(kv, &a, t, 64);
    ASSERT_EQ_INT(kv_seq_match(kv, &b, t, 64), 0);
    kv_seq_release(kv, &a);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_idle, 0);
    ASSERT_EQ_INT(st.n_published, 0);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_destroy(kv);
}

TEST(same_content_computed_twice_is_published_once)
{
    kv_cache_t *kv = make_kv(8, 16, 1);
    int32_t t[32];
    fill_tokens(t, 32, 5);
    kv_seq_t a, b;
    seq_new(kv, &a, 32, NULL);
    seq_new(kv, &b, 32, NULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 32), 0);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &b, 32), 0);
    kv_seq_commit(kv, &a, t, 32);
    kv_seq_commit(kv, &b, t, 32);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_published, 2);
    check(kv);
    kv_seq_release(kv, &b); /* b's copies are unpublished: plain free */
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_idle, 0);
    kv_seq_release(kv, &a);
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_idle, 2);
    ASSERT_EQ_INT(st.n_free, 8);
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_destroy(kv);
}

TEST(idle_blocks_are_evicted_least_recently_released_first)
{
    kv_cache_t *kv = make_kv(6, 4, 1);
    int32_t t[3][12];
    kv_seq_t s[3], x;
    for (int i = 0; i < 3; i++) {
        fill_tokens(t[i], 12, 10 + (uint32_t)i);
        seq_new(kv, &s[i], 12, NULL);
        ASSERT_EQ_INT(kv_seq_reserve(kv, &s[i], 8), 0);
        kv_seq_commit(kv, &s[i], t[i], 8); /* two published blocks each */
    }
    ASSERT_EQ_INT(kv_available(kv), 0);
    kv_seq_release(kv, &s[1]); /* released first: evicted first, tail block before head */
    kv_seq_release(kv, &s[0]);
    kv_seq_release(kv, &s[2]);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_idle, 6);
    seq_new(kv, &x, 12, NULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &x, 4), 0); /* evicts s[1]'s second block */
    ASSERT_EQ_INT(kv_seq_match(kv, &s[1], t[1], 12), 4);
    kv_seq_release(kv, &s[1]); /* now its first block is the most recently released */
    ASSERT_EQ_INT(kv_seq_reserve(kv, &x, 12), 0); /* evicts s[0]'s two blocks */
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.evictions, 3);
    ASSERT_EQ_INT(kv_seq_match(kv, &s[0], t[0], 12), 0);
    ASSERT_EQ_INT(kv_seq_match(kv, &s[2], t[2], 12), 8);
    ASSERT_EQ_INT(kv_seq_match(kv, &s[1], t[1], 12), 4);
    check(kv);
    for (int i = 0; i < 3; i++) {
        kv_seq_release(kv, &s[i]);
        kv_seq_close(&s[i]);
    }
    kv_seq_release(kv, &x);
    kv_seq_close(&x);
    ASSERT_EQ_INT(kv_available(kv), 6);
    check(kv);
    kv_destroy(kv);
}

TEST(releasing_an_unheld_block_is_counted_not_applied)
{
    kv_cache_t *kv = make_kv(4, 16, 1);
    kv_seq_t q;
    seq_new(kv, &q, 64, NULL);
    q.blocks[0] = 2; /* never reserved */
    q.n_blocks = 1;
    kv_seq_release(kv, &q);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.double_frees, 1);
    ASSERT_EQ_INT(st.n_free, 4);
    check(kv);
    kv_seq_close(&q);
    kv_destroy(kv);
}

/* ---------------------------------------------------------------- randomised */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

#define NSEQ 12
#define MAXT 96

/*
 * Sequences built from a few shared prefixes come and go; each computes
 * its tokens in random chunks.  After every operation: the pool's own
 * check, reference counts equal to the number of tables naming each
 * block, and any block named by two tables sits at the same index in
 * both, with the same tokens up to its end.
 */
TEST(random_sequences_keep_the_pool_consistent)
{
    const uint32_t B = 8, NB = 40;
    kv_cache_t *kv = make_kv(NB, B, 1);
    int32_t prefixes[3][MAXT];
    for (int p = 0; p < 3; p++)
        fill_tokens(prefixes[p], MAXT, 100 + (uint32_t)p);
    struct {
        kv_seq_t kv;
        int live;
        int32_t tok[MAXT];
        uint32_t n, done;
    } s[NSEQ];
    memset(s, 0, sizeof s);
    uint64_t hits = 0;
    for (int i = 0; i < NSEQ; i++)
        seq_new(kv, &s[i].kv, MAXT, NULL);
    for (int iter = 0; iter < 20000; iter++) {
        int i = (int)rnd(NSEQ);
        if (!s[i].live) {
            /* start: a shared prefix (or not), then its own tokens */
            uint32_t n = 1 + rnd(MAXT), shared = rnd(4) ? rnd(n + 1) : 0;
            const int32_t *p = prefixes[rnd(3)];
            for (uint32_t k = 0; k < n; k++)
                s[i].tok[k] = k < shared ? p[k] : (int32_t)rnd(5);
            s[i].n = n;
            kv_seq_start(kv, &s[i].kv, NULL, 0);
            s[i].done = kv_seq_match(kv, &s[i].kv, s[i].tok, n);
            hits += s[i].done;
            ASSERT(s[i].done < n && s[i].done % B == 0);
            s[i].live = 1;
        } else if (s[i].done < s[i].n && rnd(5)) {
            uint32_t step = 1 + rnd(s[i].n - s[i].done);
            if (kv_seq_reserve(kv, &s[i].kv, s[i].done + step) == 0) {
                s[i].done += step;
                kv_seq_commit(kv, &s[i].kv, s[i].tok, s[i].done);
            }
        } else {
            kv_seq_release(kv, &s[i].kv);
            s[i].live = 0;
        }
        check(kv);
        int refs[40] = { 0 };
        for (int a = 0; a < NSEQ; a++) {
            if (!s[a].live)
                continue;
            for (uint32_t k = 0; k < s[a].kv.n_blocks; k++) {
                refs[s[a].kv.blocks[k]]++;
                for (int b = a + 1; b < NSEQ; b++) {
                    if (!s[b].live)
                        continue;
                    for (uint32_t m = 0; m < s[b].kv.n_blocks; m++) {
                        if (s[b].kv.blocks[m] != s[a].kv.blocks[k])
                            continue;
                        ASSERT_EQ_INT(m, k);
                        uint32_t end = (k + 1) * B;
                        ASSERT_MSG(end <= s[a].done && end <= s[b].done,
                                   "block %d shared before it was computed", s[a].kv.blocks[k]);
                        ASSERT_MSG(memcmp(s[a].tok, s[b].tok, end * sizeof(int32_t)) == 0,
                                   "block %d shared by sequences whose tokens differ", s[a].kv.blocks[k]);
                    }
                }
            }
        }
        for (uint32_t b = 0; b < NB; b++)
            ASSERT_EQ_INT(kv_block_refs(kv, (int32_t)b), refs[b]);
    }
    ASSERT(hits > 0);
    for (int i = 0; i < NSEQ; i++) {
        kv_seq_release(kv, &s[i].kv);
        kv_seq_close(&s[i].kv);
    }
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_free, NB);
    ASSERT_EQ_INT(st.double_frees, 0);
    check(kv);
    kv_destroy(kv);
}

/*
 * A fork of a sequence with 40 computed tokens (two full blocks and a
 * partial third, B = 16): the children share all three; the first write
 * into the shared partial block copies it, the last holder writes in
 * place; the full blocks are never copied; releases in any order leave
 * the pool clean, prefix cache on and off.
 */
static void fork_and_cow(int prefix)
{
    kv_cache_t *kv = make_kv(12, 16, prefix);
    int32_t t[100];
    fill_tokens(t, 100, 3);
    kv_seq_t a, b, c;
    seq_new(kv, &a, 100, "s");
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 40), 0);
    kv_seq_commit(kv, &a, t, 40);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 3);
    seq_new(kv, &b, 100, NULL);
    seq_new(kv, &c, 100, NULL);
    ASSERT_EQ_INT(kv_seq_fork(kv, &b, &a, 40), 0);
    ASSERT_EQ_INT(kv_seq_fork(kv, &c, &a, 40), 0);
    ASSERT_EQ_INT(kv_seq_fork(kv, &c, &a, 40), ERR_STATE);   /* c holds blocks already */
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 3);                               /* shared blocks counted once */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ_INT(b.blocks[i], a.blocks[i]);
        ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[i]), 3);
    }
    ASSERT_EQ_INT(b.n_keyed, a.n_keyed);
    ASSERT(memcmp(b.root.b, a.root.b, SHA256_BYTES) == 0);    /* the parent's salt */
    check(kv);

    /* b writes position 40 (slot 8 of the shared block 2): a copy */
    int32_t from = -7, to = -7, shared = a.blocks[2];
    ASSERT_EQ_INT(kv_seq_cow(kv, &b, 40, &from, &to), 1);
    ASSERT_EQ_INT(from, shared);
    ASSERT(to != shared && to >= 0);
    ASSERT_EQ_INT(b.blocks[2], to);
    ASSERT_EQ_INT(kv_block_refs(kv, shared), 2);
    ASSERT_EQ_INT(kv_block_refs(kv, to), 1);
    /* again: b holds it alone now, nothing to copy, outputs untouched */
    from = to = -7;
    ASSERT_EQ_INT(kv_seq_cow(kv, &b, 41, &from, &to), 0);
    ASSERT_EQ_INT(from, -7);
    /* a past its blocks: nothing to copy (a new block comes from reserve) */
    ASSERT_EQ_INT(kv_seq_cow(kv, &a, 48, &from, &to), 0);
    /* c copies too; then a is the last holder and writes in place */
    ASSERT_EQ_INT(kv_seq_cow(kv, &c, 40, &from, &to), 1);
    ASSERT_EQ_INT(from, shared);
    ASSERT_EQ_INT(kv_block_refs(kv, shared), 1);
    ASSERT_EQ_INT(kv_seq_cow(kv, &a, 40, &from, &to), 0);
    ASSERT_EQ_INT(a.blocks[2], shared);
    ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[0]), 3);          /* full blocks stay shared */
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 5);
    check(kv);

    /* each grows and commits its own blocks; the shared full ones stay published once */
    ASSERT_EQ_INT(kv_seq_reserve(kv, &b, 60), 0);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &c, 50), 0);
    kv_seq_commit(kv, &b, t, 60);
    kv_seq_commit(kv, &c, t, 50);
    check(kv);

    /* release in an order other than the fork's: parent in the middle */
    kv_seq_release(kv, &b);
    check(kv);
    kv_seq_release(kv, &a);
    ASSERT_EQ_INT(kv_block_refs(kv, c.blocks[0]), 1);
    check(kv);
    kv_seq_release(kv, &c);
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 0);
    ASSERT_EQ_INT(st.n_free, 12);
    ASSERT_EQ_INT(st.double_frees, 0);
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_seq_close(&c);
    kv_destroy(kv);
}

TEST(fork_shares_blocks_and_copies_the_partial_one_on_first_write)
{
    fork_and_cow(1);
    fork_and_cow(0);
}

TEST(fork_and_cow_fail_without_changing_anything)
{
    kv_cache_t *kv = make_kv(3, 16, 1);
    int32_t t[64];
    fill_tokens(t, 64, 5);
    kv_seq_t a, b, small;
    seq_new(kv, &a, 64, NULL);
    seq_new(kv, &b, 64, NULL);
    seq_new(kv, &small, 16, NULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 40), 0);              /* the whole pool */
    kv_seq_commit(kv, &a, t, 40);
    ASSERT_EQ_INT(kv_seq_fork(kv, &b, &a, 49), ERR_RANGE);      /* a holds 48 positions */
    ASSERT_EQ_INT(kv_seq_fork(kv, &small, &a, 40), ERR_RANGE);  /* room for one block */
    ASSERT_EQ_INT(kv_seq_fork(kv, &b, &a, 20), ERR_RANGE);      /* would cut a keyed block */
    ASSERT_EQ_INT(b.n_blocks, 0);
    ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[0]), 1);
    ASSERT_EQ_INT(kv_seq_fork(kv, &b, &a, 40), 0);
    int32_t from = -7, to = -7;
    ASSERT_EQ_INT(kv_seq_cow(kv, &b, 40, &from, &to), ERR_FULL); /* no block to copy into */
    ASSERT_EQ_INT(from, -7);
    ASSERT_EQ_INT(b.blocks[2], a.blocks[2]);
    ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[2]), 2);
    check(kv);
    kv_seq_release(kv, &a);                                      /* parent first */
    ASSERT_EQ_INT(kv_seq_cow(kv, &b, 40, &from, &to), 0);        /* b alone: in place */
    kv_seq_release(kv, &b);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 0);
    ASSERT_EQ_INT(st.double_frees, 0);
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_seq_close(&small);
    kv_destroy(kv);
}

/* Truncation: across block boundaries, into a block a fork shares, never into a keyed one. */
TEST(truncate_returns_the_blocks_past_the_cut)
{
    kv_cache_t *kv = make_kv(10, 16, 1);
    int32_t t[100];
    fill_tokens(t, 100, 9);
    kv_seq_t a, b;
    seq_new(kv, &a, 100, NULL);
    seq_new(kv, &b, 100, NULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 40), 0);
    kv_seq_commit(kv, &a, t, 40);                   /* blocks 0 and 1 published */
    int32_t pub0 = a.blocks[0], pub1 = a.blocks[1];
    ASSERT_EQ_INT(kv_seq_fork(kv, &b, &a, 40), 0);   /* b shares all three */
    int32_t shared = a.blocks[2];
    /* a runs ahead by 40 positions (three blocks of its own), then falls back to 41:
       the cut crosses two block boundaries and keeps the shared block 2 */
    int32_t from, to;
    ASSERT_EQ_INT(kv_seq_cow(kv, &a, 40, &from, &to), 1);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 80), 0);
    ASSERT_EQ_INT(a.n_blocks, 5);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 6);
    ASSERT_EQ_INT(kv_seq_truncate(kv, &a, 41), 0);
    ASSERT_EQ_INT(a.n_blocks, 3);
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 4);
    ASSERT_EQ_INT(st.n_free, 6);
    check(kv);
    /* a truncate past what is held, or to the exact end, changes nothing */
    ASSERT_EQ_INT(kv_seq_truncate(kv, &a, 90), 0);
    ASSERT_EQ_INT(kv_seq_truncate(kv, &a, 48), 0);
    ASSERT_EQ_INT(a.n_blocks, 3);
    /* b cuts at 33: it keeps block 2, which it holds alone since a copied it */
    ASSERT_EQ_INT(kv_block_refs(kv, shared), 1);
    ASSERT_EQ_INT(kv_seq_truncate(kv, &b, 33), 0);
    ASSERT_EQ_INT(b.n_blocks, 3);
    ASSERT_EQ_INT(kv_seq_truncate(kv, &b, 32), 0);   /* the boundary: block 2 goes */
    ASSERT_EQ_INT(b.n_blocks, 2);
    ASSERT_EQ_INT(kv_block_refs(kv, shared), 0);
    /* into a keyed (published) block: refused, nothing changes */
    ASSERT_EQ_INT(kv_seq_truncate(kv, &b, 31), ERR_RANGE);
    ASSERT_EQ_INT(kv_seq_truncate(kv, &a, 20), ERR_RANGE);
    ASSERT_EQ_INT(b.n_blocks, 2);
    ASSERT_EQ_INT(a.n_blocks, 3);
    ASSERT_EQ_INT(kv_block_refs(kv, pub0), 2);
    ASSERT_EQ_INT(kv_block_refs(kv, pub1), 2);
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_published, 2);
    check(kv);
    kv_seq_release(kv, &a);
    kv_seq_release(kv, &b);
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 0);
    ASSERT_EQ_INT(st.n_idle, 2);                       /* the published blocks still matchable */
    ASSERT_EQ_INT(st.double_frees, 0);
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_destroy(kv);
}

/* Truncating into a block a fork still shares keeps it shared; the next write copies. */
TEST(truncate_into_a_shared_block_keeps_it_for_copy_on_write)
{
    kv_cache_t *kv = make_kv(8, 16, 0);
    kv_seq_t a, b;
    seq_new(kv, &a, 64, NULL);
    seq_new(kv, &b, 64, NULL);
    ASSERT_EQ_INT(kv_seq_reserve(kv, &a, 20), 0);
    ASSERT_EQ_INT(kv_seq_fork(kv, &b, &a, 20), 0);
    int32_t shared = a.blocks[1];
    ASSERT_EQ_INT(kv_seq_reserve(kv, &b, 40), 0);     /* b's own block 2 */
    ASSERT_EQ_INT(kv_seq_truncate(kv, &b, 18), 0);
    ASSERT_EQ_INT(b.n_blocks, 2);
    ASSERT_EQ_INT(b.blocks[1], shared);
    ASSERT_EQ_INT(kv_block_refs(kv, shared), 2);
    int32_t from = -7, to = -7;
    ASSERT_EQ_INT(kv_seq_cow(kv, &b, 18, &from, &to), 1);
    ASSERT_EQ_INT(from, shared);
    ASSERT_EQ_INT(kv_block_refs(kv, shared), 1);
    ASSERT_EQ_INT(kv_seq_truncate(kv, &b, 0), 0);      /* everything goes */
    ASSERT_EQ_INT(b.n_blocks, 0);
    ASSERT_EQ_INT(kv_block_refs(kv, a.blocks[0]), 1);
    check(kv);
    kv_seq_release(kv, &a);
    kv_stats_t st;
    kv_get_stats(kv, &st);
    ASSERT_EQ_INT(st.n_used, 0);
    ASSERT_EQ_INT(st.double_frees, 0);
    check(kv);
    kv_seq_close(&a);
    kv_seq_close(&b);
    kv_destroy(kv);
}

TEST_LIST(T(sha256_matches_fips_examples), T(create_rejects_empty_pools),
          T(reserve_takes_whole_blocks_and_fails_atomically),
          T(prefix_match_shares_full_computed_blocks), T(prefix_cache_off_never_shares),
          T(same_content_computed_twice_is_published_once),
          T(idle_blocks_are_evicted_least_recently_released_first),
          T(releasing_an_unheld_block_is_counted_not_applied),
          T(random_sequences_keep_the_pool_consistent),
          T(fork_shares_blocks_and_copies_the_partial_one_on_first_write),
          T(fork_and_cow_fail_without_changing_anything),
          T(truncate_returns_the_blocks_past_the_cut),
          T(truncate_into_a_shared_block_keeps_it_for_copy_on_write))
