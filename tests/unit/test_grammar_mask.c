/*
 * test_grammar_mask.c - token masks against brute force: for several
 * grammars and a random vocabulary, gm_mask's bits equal feeding each
 * token into a fresh matcher at the same state; end tokens; cache hits
 * equal misses.  mask_timing_128k prints (does not assert) the mask time
 * per token on a synthetic 128,256-token vocabulary.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "base/err.h"
#include "engine/grammar/grammar.h"
#include "engine/grammar/grammar_impl.h"   /* the cache's hit and miss counts */

/* ------------------------------------------------------------------ vocabularies */

typedef struct {
    uint32_t n;
    char **text;
    size_t *len;
} tvocab_t;

static const void *piece_cb(void *ctx, int32_t id, size_t *len)
{
    tvocab_t *t = ctx;
    *len = t->len[id];
    return t->text[id];
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static const char ALPHA[] = "ab(){}[]\":,.-+eE0123456789 \ttrufalsn\\/x";

/*
 * Tokens: 0 and 1 end tokens, 2 has no text, then the 256 single bytes,
 * then random strings of 1..maxlen bytes, mostly from ALPHA, some UTF-8
 * and some random bytes.
 */
static tvocab_t make_vocab(uint32_t n, uint32_t maxlen)
{
    tvocab_t t = { n, calloc(n, sizeof(char *)), calloc(n, sizeof(size_t)) };
    for (uint32_t id = 3; id < n; id++) {
        size_t len = id < 259 ? 1 : 1 + rnd() % maxlen;
        t.text[id] = malloc(len);
        t.len[id] = len;
        for (size_t k = 0; k < len; k++) {
            uint32_t r = rnd() % 100;
            if (id < 259)
                t.text[id][k] = (char)(id - 3);
            else if (r < 80)
                t.text[id][k] = ALPHA[rnd() % (sizeof ALPHA - 1)];
            else if (r < 90 && k + 1 < len) {
                t.text[id][k++] = (char)0xC3;
                t.text[id][k] = (char)(0xA0 + rnd() % 16);
            } else
                t.text[id][k] = (char)rnd();
        }
    }
    t.text[1] = malloc(5);
    memcpy(t.text[1], "</s>", 4);       /* an end token with text: its text is never fed */
    t.len[1] = 4;
    return t;
}

static void free_vocab(tvocab_t *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        free(t->text[i]);
    free(t->text);
    free(t->len);
}

/* ------------------------------------------------------------------ grammars */

static uint32_t lit(gbuild_t *b, const char *s)
{
    return gb_literal(b, s, strlen(s));
}

static uint32_t byte1(gbuild_t *b, char c)
{
    return gb_range(b, (uint8_t)c, (uint8_t)c);
}

/* JSON with bounded whitespace (up to 4 of space, tab, newline between tokens). */
static grammar_t *json_grammar(void)
{
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    uint8_t wsset[32] = { 0 };
    wsset[' ' / 8] |= 1u << (' ' % 8);
    wsset['\t' / 8] |= 1u << ('\t' % 8);
    wsset['\n' / 8] |= 1u << ('\n' % 8);
    uint32_t ws = gb_repeat(b, ge_bytes(gb_class(b, wsset)), 0, 4);
    uint32_t value = gb_named(b, "value", 5);
    /* string */
    const uint32_t bad[][2] = { { 0, 0x1F }, { '"', '"' }, { '\\', '\\' } };
    uint32_t plain = gb_codepoints(b, bad, 3, 1);
    uint32_t esc = gb_rule(b, "escape");
    uint8_t escset[32] = { 0 };
    for (const char *p = "\"\\/bfnrt"; *p; p++)
        escset[(uint8_t)*p / 8] |= (uint8_t)(1u << (*p % 8));
    gb_alt(b, esc, (gelem_t[]){ ge_bytes(byte1(b, '\\')), ge_bytes(gb_class(b, escset)) }, 2);
    uint8_t hex[32] = { 0 };
    for (const char *p = "0123456789abcdefABCDEF"; *p; p++)
        hex[(uint8_t)*p / 8] |= (uint8_t)(1u << (*p % 8));
    uint32_t h = gb_class(b, hex);
    gb_alt(b, esc, (gelem_t[]){ ge_bytes(byte1(b, '\\')), ge_bytes(byte1(b, 'u')), ge_bytes(h),
                                ge_bytes(h), ge_bytes(h), ge_bytes(h) }, 6);
    uint32_t ch = gb_rule(b, "char");
    gb_alt(b, ch, (gelem_t[]){ ge_ref(plain) }, 1);
    gb_alt(b, ch, (gelem_t[]){ ge_ref(esc) }, 1);
    uint32_t str = gb_seq(b, (gelem_t[]){ ge_bytes(byte1(b, '"')), ge_ref(gb_repeat(b, ge_ref(ch), 0, GB_INF)),
                                          ge_bytes(byte1(b, '"')) }, 3);
    /* number */
    uint32_t digit = gb_range(b, '0', '9');
    uint32_t digits = gb_repeat(b, ge_bytes(digit), 1, GB_INF);
    uint32_t intpart = gb_rule(b, "int");
    gb_alt(b, intpart, (gelem_t[]){ ge_bytes(byte1(b, '0')) }, 1);
    gb_alt(b, intpart, (gelem_t[]){ ge_bytes(gb_range(b, '1', '9')), ge_ref(gb_repeat(b, ge_bytes(digit), 0, GB_INF)) }, 2);
    uint32_t frac = gb_repeat(b, ge_ref(gb_seq(b, (gelem_t[]){ ge_bytes(byte1(b, '.')), ge_ref(digits) }, 2)), 0, 1);
    uint8_t eset[32] = { 0 }, sign[32] = { 0 };
    eset['e' / 8] |= 1u << ('e' % 8);
    eset['E' / 8] |= 1u << ('E' % 8);
    sign['+' / 8] |= 1u << ('+' % 8);
    sign['-' / 8] |= 1u << ('-' % 8);
    uint32_t expo = gb_repeat(b, ge_ref(gb_seq(b, (gelem_t[]){ ge_bytes(gb_class(b, eset)),
        ge_ref(gb_repeat(b, ge_bytes(gb_class(b, sign)), 0, 1)), ge_ref(digits) }, 3)), 0, 1);
    uint32_t num = gb_seq(b, (gelem_t[]){ ge_ref(gb_repeat(b, ge_bytes(byte1(b, '-')), 0, 1)), ge_ref(intpart),
                                          ge_ref(frac), ge_ref(expo) }, 4);
    /* object and array */
    uint32_t comma = gb_seq(b, (gelem_t[]){ ge_ref(ws), ge_bytes(byte1(b, ',')), ge_ref(ws) }, 3);
    uint32_t member = gb_seq(b, (gelem_t[]){ ge_ref(str), ge_ref(ws), ge_bytes(byte1(b, ':')), ge_ref(ws),
                                             ge_ref(value) }, 5);
    uint32_t more_m = gb_repeat(b, ge_ref(gb_seq(b, (gelem_t[]){ ge_ref(comma), ge_ref(member) }, 2)), 0, GB_INF);
    uint32_t members = gb_repeat(b, ge_ref(gb_seq(b, (gelem_t[]){ ge_ref(member), ge_ref(more_m) }, 2)), 0, 1);
    uint32_t obj = gb_seq(b, (gelem_t[]){ ge_bytes(byte1(b, '{')), ge_ref(ws), ge_ref(members), ge_ref(ws),
                                          ge_bytes(byte1(b, '}')) }, 5);
    uint32_t more_v = gb_repeat(b, ge_ref(gb_seq(b, (gelem_t[]){ ge_ref(comma), ge_ref(value) }, 2)), 0, GB_INF);
    uint32_t values = gb_repeat(b, ge_ref(gb_seq(b, (gelem_t[]){ ge_ref(value), ge_ref(more_v) }, 2)), 0, 1);
    uint32_t arr = gb_seq(b, (gelem_t[]){ ge_bytes(byte1(b, '[')), ge_ref(ws), ge_ref(values), ge_ref(ws),
                                          ge_bytes(byte1(b, ']')) }, 5);
    uint32_t alts[] = { obj, arr, str, num, lit(b, "true"), lit(b, "false"), lit(b, "null") };
    for (size_t i = 0; i < 7; i++)
        gb_alt(b, value, (gelem_t[]){ ge_ref(alts[i]) }, 1);
    uint32_t root = gb_seq(b, (gelem_t[]){ ge_ref(obj) }, 1);
    char err[512] = "";
    grammar_t *g = NULL;
    ASSERT_MSG(gb_finish(b, root, &g, err, sizeof err) == 0, "json grammar: %s", err);
    return g;
}

static grammar_t *parens_grammar(void)
{
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    uint32_t p = gb_named(b, "p", 1);
    gb_alt(b, p, (gelem_t[]){ ge_bytes(byte1(b, '(')), ge_ref(p), ge_bytes(byte1(b, ')')), ge_ref(p) }, 4);
    gb_alt(b, p, (gelem_t[]){ ge_bytes(gb_range(b, 'a', 'b')), ge_ref(p) }, 2);
    gb_alt(b, p, NULL, 0);
    grammar_t *g;
    ASSERT_EQ_INT(gb_finish(b, p, &g, NULL, 0), 0);
    return g;
}

static grammar_t *ambiguous_grammar(void)
{
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    uint32_t alt = gb_rule(b, NULL);
    gb_alt(b, alt, (gelem_t[]){ ge_ref(lit(b, "a")) }, 1);
    gb_alt(b, alt, (gelem_t[]){ ge_ref(lit(b, "ab")) }, 1);
    uint32_t star = gb_repeat(b, ge_ref(alt), 0, GB_INF);
    uint32_t root = gb_seq(b, (gelem_t[]){ ge_ref(star), ge_ref(lit(b, "b:")),
                                           ge_ref(gb_repeat(b, ge_ref(lit(b, "\xc3\xa1")), 2, 5)) }, 3);
    grammar_t *g;
    ASSERT_EQ_INT(gb_finish(b, root, &g, NULL, 0), 0);
    return g;
}

/* ------------------------------------------------------------------ brute force */

static int64_t popcount_mask(const uint32_t *mask, size_t words)
{
    int64_t n = 0;
    for (size_t i = 0; i < words; i++)
        n += __builtin_popcount(mask[i]);
    return n;
}

/* Each bit of mask (n_vocab bits) equals feeding text[0..n) then the token into a fresh matcher. */
static void mask_equals_feed(grammar_t *g, const tvocab_t *t, const gvocab_t *v, const uint32_t *mask,
                             const char *text, size_t n)
{
    gmatch_t *f;
    ASSERT_EQ_INT(gm_create(&f, g), 0);
    for (uint32_t id = 0; id < t->n; id++) {
        gm_reset(f);
        ASSERT_EQ_INT(gm_feed(f, text, n), 0);
        int ok = gm_feed_token(f, v, (int32_t)id) == 0;
        int bit = (mask[id >> 5] >> (id & 31)) & 1;
        ASSERT_MSG(ok == bit, "after \"%.*s\": token %u (\"%.*s\"): mask %d, feed %d", (int)n, text, id,
                   (int)t->len[id], t->text[id] ? t->text[id] : "", bit, ok);
    }
    gm_destroy(f);
}

/*
 * Walk random paths through g: at each step the mask must equal brute
 * force (a fresh matcher fed the text so far, then the token), a second
 * gm_mask (a cache hit) must equal the first, and a random allowed token
 * is taken.
 */
static void against_brute_force(grammar_t *g, const tvocab_t *t, const gvocab_t *v, int paths, int steps)
{
    size_t words = gvocab_mask_words(v);
    uint32_t *mask = malloc(words * 4), *again = malloc(words * 4);
    char text[4096];
    for (int p = 0; p < paths; p++) {
        gmatch_t *m;
        ASSERT_EQ_INT(gm_create(&m, g), 0);
        size_t n = 0;
        for (int s = 0; s < steps; s++) {
            int64_t cnt = gm_mask(m, v, mask);
            ASSERT(cnt >= 0);
            ASSERT_EQ_INT(cnt, popcount_mask(mask, words));
            ASSERT_EQ_INT(gm_mask(m, v, again), cnt);
            ASSERT(memcmp(mask, again, words * 4) == 0);
            mask_equals_feed(g, t, v, mask, text, n);
            ASSERT_EQ_INT((mask[0] & 1) != 0, gm_accepting(m));      /* end token 0 */
            ASSERT_EQ_INT((mask[0] >> 2) & 1, 0);                     /* no text: never */
            if (cnt == 0 || (cnt == 2 && (mask[0] & 3) == 3))
                break;
            int32_t pick;
            do
                pick = (int32_t)(rnd() % t->n);
            while (!((mask[pick >> 5] >> (pick & 31)) & 1) || pick < 2);
            if (n + t->len[pick] > sizeof text)
                break;
            ASSERT_EQ_INT(gm_feed_token(m, v, pick), 0);
            memcpy(text + n, t->text[pick], t->len[pick]);
            n += t->len[pick];
        }
        gm_destroy(m);
    }
    free(mask);
    free(again);
}

TEST(masks_equal_brute_force)
{
    tvocab_t t = make_vocab(700, 6);
    gvocab_t *v;
    int32_t end[] = { 0, 1 };
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, end, 2, NULL, 0), 0);
    grammar_t *gs[] = { json_grammar(), parens_grammar(), ambiguous_grammar() };
    for (size_t i = 0; i < 3; i++) {
        against_brute_force(gs[i], &t, v, 6, 25);
        grammar_release(gs[i]);
    }
    gvocab_destroy(v);
    free_vocab(&t);
}

TEST(end_tokens_and_errors)
{
    tvocab_t t = make_vocab(300, 3);
    gvocab_t *v;
    int32_t end[] = { 0 }, bad[] = { 300 };
    char err[512];
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, bad, 1, err, sizeof err), ERR_INVALID);
    ASSERT_EQ_INT(gvocab_create(&v, 0, piece_cb, &t, NULL, 0, err, sizeof err), ERR_INVALID);
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, end, 1, err, sizeof err), 0);
    ASSERT_EQ_U64(gvocab_n_vocab(v), 300);
    ASSERT_EQ_U64(gvocab_mask_words(v), 10);
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    grammar_t *g;
    ASSERT_EQ_INT(gb_finish(b, lit(b, "ab"), &g, NULL, 0), 0);
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    uint32_t mask[10];
    ASSERT_EQ_INT(gm_feed_token(m, v, 0), ERR_INVALID);    /* not accepting yet */
    ASSERT_EQ_INT(gm_feed_token(m, v, -1), ERR_INVALID);
    ASSERT_EQ_INT(gm_feed_token(m, v, 300), ERR_INVALID);
    ASSERT_EQ_INT(gm_feed_token(m, v, 2), ERR_INVALID);    /* no text */
    int64_t n = gm_mask(m, v, mask);
    ASSERT(n >= 1);
    ASSERT_EQ_INT(mask[0] & 1, 0);
    ASSERT_EQ_INT(gm_feed(m, "ab", 2), 0);
    ASSERT_EQ_INT(gm_mask(m, v, mask), 1);                 /* only the end token */
    ASSERT_EQ_INT(mask[0], 1);
    ASSERT_EQ_INT(gm_feed_token(m, v, 0), 0);
    ASSERT_EQ_INT(gm_accepting(m), 1);
    gm_destroy(m);
    grammar_release(g);
    gvocab_destroy(v);
    free_vocab(&t);
}

TEST(cache_shared_across_matchers)
{
    tvocab_t t = make_vocab(2000, 8);
    gvocab_t *v;
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    grammar_t *g = json_grammar();
    gmatch_t *a, *b;
    ASSERT_EQ_INT(gm_create(&a, g), 0);
    ASSERT_EQ_INT(gm_create(&b, g), 0);
    ASSERT_EQ_INT(gm_feed(a, "{\"k\": [1, ", 10), 0);
    ASSERT_EQ_INT(gm_feed(b, "{\"zz\": [22,", 11), 0);
    ASSERT_EQ_INT(gm_feed(b, " ", 1), 0);          /* the same state reached another way */
    size_t words = gvocab_mask_words(v);
    uint32_t *x = malloc(words * 4), *y = malloc(words * 4);
    uint64_t h0 = g->cache.hits;
    int64_t nx = gm_mask(a, v, x);
    int64_t ny = gm_mask(b, v, y);
    ASSERT(nx > 0);
    ASSERT_EQ_INT(nx, ny);
    ASSERT(memcmp(x, y, words * 4) == 0);
    ASSERT_EQ_U64(g->cache.hits, h0 + 1);
    free(x);
    free(y);
    gm_destroy(a);
    gm_destroy(b);
    grammar_release(g);
    gvocab_destroy(v);
    free_vocab(&t);
}

/* gm_mask of a new matcher fed the string text, against brute force. */
static void mask_after(grammar_t *g, const tvocab_t *t, const gvocab_t *v, const char *text)
{
    size_t n = strlen(text), words = gvocab_mask_words(v);
    uint32_t *mask = malloc(words * 4);
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    ASSERT_EQ_INT(gm_feed(m, text, n), 0);
    int64_t cnt = gm_mask(m, v, mask);
    ASSERT(cnt >= 0);
    ASSERT_EQ_INT(cnt, popcount_mask(mask, words));
    mask_equals_feed(g, t, v, mask, text, n);
    gm_destroy(m);
    free(mask);
}

/*
 * Inside a string the state loops on most bytes: the mask comes from the
 * vocabulary's loop set plus walks from the exits (a quote, a backslash,
 * a UTF-8 lead byte).  Tokens that leave the string mid-token, escapes
 * split across tokens, broken UTF-8 and control bytes, in several
 * contexts; the loop set is made once and shared by the contexts and by
 * another grammar with the same string rule.
 */
TEST(string_loop_fast_path)
{
    tvocab_t t = make_vocab(3000, 7);
    static const char *const extra[] = { "\"", "\\", ": ", "\\u00", "e9\"", "ab\\", "\"}", "\"]",
                                         "x\"x", "\xc3", "\xc3\xa9", "\xa9z", "\x01", "\\n\"", "\\q" };
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) {
        free(t.text[300 + i]);
        t.len[300 + i] = strlen(extra[i]);
        t.text[300 + i] = malloc(t.len[300 + i]);
        memcpy(t.text[300 + i], extra[i], t.len[300 + i]);
    }
    gvocab_t *v;
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    ASSERT_EQ_U64(gvocab_n_loops(v), 0);
    grammar_t *g = json_grammar(), *g2 = json_grammar();
    static const char *const texts[] = { "{\"", "{\"ab", "{\"k\": \"x", "{\"k\": [1, \"\\n", "{\"k\": {\"q\": \"\xc3\xa9" };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        mask_after(g, &t, v, texts[i]);
    ASSERT_EQ_U64(gvocab_n_loops(v), 1);
    mask_after(g2, &t, v, "{\"");
    ASSERT_EQ_U64(gvocab_n_loops(v), 1);
    grammar_release(g);
    grammar_release(g2);
    gvocab_destroy(v);
    free_vocab(&t);
}

/*
 * A string of at most 6 characters (JSON Schema maxLength): each byte of
 * the group takes the state one character further, so tokens made of
 * the group are allowed up to the characters left, and exits deeper
 * than that are not walked.  Checked at every length, on a vocabulary
 * with tokens of 1..9 bytes (both ways of setting the group's tokens).
 */
TEST(bounded_string_chain)
{
    tvocab_t t = make_vocab(4000, 9);
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    const uint32_t bad[][2] = { { 0, 0x1F }, { '"', '"' }, { '\\', '\\' } };
    uint32_t ch = gb_codepoints(b, bad, 3, 1);
    uint32_t q = byte1(b, '"');
    uint32_t root = gb_seq(b, (gelem_t[]){ ge_bytes(q), ge_ref(gb_repeat(b, ge_ref(ch), 0, 6)), ge_bytes(q),
                                           ge_ref(lit(b, "}")) }, 4);
    grammar_t *g;
    ASSERT_EQ_INT(gb_finish(b, root, &g, NULL, 0), 0);
    gvocab_t *v;
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    static const char *const texts[] = { "\"", "\"a", "\"ab", "\"a\xc3\xa9", "\"abcd", "\"abcde", "\"abcdef",
                                         "\"\xc3" };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        mask_after(g, &t, v, texts[i]);
    ASSERT(gvocab_n_loops(v) >= 1);
    grammar_release(g);
    gvocab_destroy(v);
    free_vocab(&t);
}

typedef struct {
    grammar_t *g;
    const gvocab_t *v;
    uint32_t *mask;
    int64_t count;
} masker_t;

static void *mask_in_string(void *arg)
{
    masker_t *w = arg;
    gmatch_t *m;
    w->count = -1;
    if (gm_create(&m, w->g) == 0 && gm_feed(m, "{\"k\": \"a", 8) == 0)
        w->count = gm_mask(m, w->v, w->mask);
    gm_destroy(m);
    return NULL;
}

/*
 * Threads with their own grammars (so their own caches) reach the same
 * string state at once on one vocabulary: they race to make its loop
 * set, one is kept, and every mask is the same.
 */
TEST(loop_sets_across_threads)
{
    enum { N_THREADS = 4 };
    tvocab_t t = make_vocab(20000, 8);
    gvocab_t *v;
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    masker_t w[N_THREADS];
    pthread_t th[N_THREADS];
    size_t words = gvocab_mask_words(v);
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (masker_t){ json_grammar(), v, malloc(words * 4), 0 };
        ASSERT_EQ_INT(pthread_create(&th[i], NULL, mask_in_string, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ_U64(gvocab_n_loops(v), 1);
    ASSERT(w[0].count > 0);
    mask_equals_feed(w[0].g, &t, v, w[0].mask, "{\"k\": \"a", 8);
    for (int i = 1; i < N_THREADS; i++) {
        ASSERT_EQ_INT(w[i].count, w[0].count);
        ASSERT(memcmp(w[i].mask, w[0].mask, words * 4) == 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        free(w[i].mask);
        grammar_release(w[i].g);
    }
    gvocab_destroy(v);
    free_vocab(&t);
}

/*
 * A walk that meets more states than the matcher's DFA holds (4000
 * literals whose prefixes of 1..5 bytes are 4445 distinct states) falls
 * back to the matcher walk, with the same mask.
 */
TEST(dfa_full_falls_back)
{
    enum { N_LIT = 4000 };
    tvocab_t t = { N_LIT + 10, calloc(N_LIT + 10, sizeof(char *)), calloc(N_LIT + 10, sizeof(size_t)) };
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    uint32_t root = gb_rule(b, "root");
    for (uint32_t i = 0; i < N_LIT; i++) {
        char w[16];
        snprintf(w, sizeof w, "w%04u%04u", i, i);  /* the prefixes of length 5: 4000 distinct states */
        gb_alt(b, root, (gelem_t[]){ ge_ref(lit(b, w)) }, 1);
        t.text[1 + i] = malloc(5);
        memcpy(t.text[1 + i], w, 5);
        t.len[1 + i] = 5;
    }
    static const char *const extra[] = { "w", "w3", "w39", "w4", "x", "w0a", "w00000", "9", "99" };
    for (uint32_t i = 0; i < 9; i++) {
        t.len[1 + N_LIT + i] = strlen(extra[i]);
        t.text[1 + N_LIT + i] = malloc(t.len[1 + N_LIT + i]);
        memcpy(t.text[1 + N_LIT + i], extra[i], t.len[1 + N_LIT + i]);
    }
    grammar_t *g;
    ASSERT_EQ_INT(gb_finish(b, root, &g, NULL, 0), 0);
    gvocab_t *v;
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    gmatch_t *m;
    uint32_t *mask = malloc(gvocab_mask_words(v) * 4);
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    ASSERT_EQ_INT(gm_mask(m, v, mask), 4000 + 4);  /* and w, w3, w39, w00000 */
    mask_equals_feed(g, &t, v, mask, "", 0);
    ASSERT_EQ_U64(gdfa_n_states(gm_dfa(m)), 1);    /* cleared: the matcher walk made the mask */
    ASSERT_EQ_INT(gm_feed(m, "w3", 2), 0);
    ASSERT_EQ_INT(gm_mask(m, v, mask), 2);          /* 9, 99: a smaller walk, through the DFA again */
    mask_equals_feed(g, &t, v, mask, "w3", 2);
    ASSERT(gdfa_n_states(gm_dfa(m)) > 1);
    gm_destroy(m);
    free(mask);
    grammar_release(g);
    gvocab_destroy(v);
    free_vocab(&t);
}

/* gm_mask of a new matcher fed text; whether the grammar's cache answered it. */
static int cached_mask(grammar_t *g, const gvocab_t *v, const char *text, uint32_t *mask)
{
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    ASSERT_EQ_INT(gm_feed(m, text, strlen(text)), 0);
    uint64_t hits = g->cache.hits;
    ASSERT(gm_mask(m, v, mask) >= 0);
    gm_destroy(m);
    return g->cache.hits != hits;
}

/*
 * A full cache evicts the least recently used entry, not everything:
 * with room for five states, a hit on the oldest keeps it and the next
 * insert evicts the one after it.
 */
TEST(cache_evicts_least_recent)
{
    tvocab_t t = make_vocab(8000, 4);
    gvocab_t *v;
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    grammar_t *g = parens_grammar();
    uint32_t *mask = malloc(gvocab_mask_words(v) * 4), *fresh = malloc(gvocab_mask_words(v) * 4);
    static const char *const keep[] = { "((", "(((", "((((" };
    ASSERT_EQ_INT(cached_mask(g, v, "", mask), 0);
    ASSERT_EQ_INT(cached_mask(g, v, "(((((", mask), 0);    /* the longest key: the one evicted */
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(cached_mask(g, v, keep[i], mask), 0);
    g->cache.max_bytes = g->cache.bytes;                    /* room for these five */
    ASSERT_EQ_INT(cached_mask(g, v, "", mask), 1);          /* now the most recent */
    ASSERT_EQ_INT(cached_mask(g, v, "(", mask), 0);         /* evicts "(((((" only */
    ASSERT_EQ_U64(g->cache.evictions, 1);
    ASSERT_EQ_U64(g->cache.n_entries, 5);
    ASSERT(g->cache.bytes <= g->cache.max_bytes);
    ASSERT_EQ_INT(cached_mask(g, v, "", mask), 1);
    ASSERT_EQ_INT(cached_mask(g, v, "(", mask), 1);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(cached_mask(g, v, keep[i], mask), 1);
    ASSERT_EQ_INT(cached_mask(g, v, "(((((", fresh), 0);    /* gone: walked again, the same mask */
    ASSERT_EQ_INT(cached_mask(g, v, "(((((", mask), 1);
    ASSERT(memcmp(mask, fresh, gvocab_mask_words(v) * 4) == 0);
    free(mask);
    free(fresh);
    grammar_release(g);
    gvocab_destroy(v);
    free_vocab(&t);
}

/* ------------------------------------------------------------------ timing */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, size_t n)
{
    if (n == 0) {
        printf("  %s: none\n", what);
        return;
    }
    qsort(t, n, sizeof *t, cmp_d);
    printf("  %s: n=%zu p50=%.1f us p99=%.1f us max=%.1f us\n", what, n, t[n / 2], t[(n * 99) / 100],
           t[n - 1]);
}

TEST(mask_timing_128k)
{
    tvocab_t t = make_vocab(128256, 12);
    gvocab_t *v;
    double t0 = now_us();
    ASSERT_EQ_INT(gvocab_create(&v, t.n, piece_cb, &t, (int32_t[]){ 0 }, 1, NULL, 0), 0);
    printf("  vocabulary of %u tokens: trie built in %.1f ms\n", t.n, (now_us() - t0) / 1e3);
    grammar_t *g = json_grammar();
    size_t words = gvocab_mask_words(v);
    uint32_t *mask = malloc(words * 4);
    enum { STEPS = 400 };
    double *hit = malloc(STEPS * 2 * sizeof *hit), *miss = malloc(STEPS * sizeof *miss);
    size_t n_hit = 0, n_miss = 0;
    for (int run = 0; run < 4; run++) {
        gmatch_t *m;
        ASSERT_EQ_INT(gm_create(&m, g), 0);
        for (int s = 0; s < STEPS / 4; s++) {
            uint64_t misses = g->cache.misses;
            double a = now_us();
            int64_t cnt = gm_mask(m, v, mask);
            double d = now_us() - a;
            ASSERT(cnt >= 0);
            if (g->cache.misses != misses)
                miss[n_miss++] = d;
            else
                hit[n_hit++] = d;
            a = now_us();
            ASSERT_EQ_INT(gm_mask(m, v, mask), cnt);
            hit[n_hit++] = now_us() - a;
            if (cnt == 0 || (cnt == 1 && (mask[0] & 1)))
                break;
            int32_t pick;
            do
                pick = (int32_t)(rnd() % t.n);
            while (pick == 0 || !((mask[pick >> 5] >> (pick & 31)) & 1));
            ASSERT_EQ_INT(gm_feed_token(m, v, pick), 0);
        }
        gm_destroy(m);
    }
    printf("  JSON grammar, %u tokens (%zu cache entries, %zu KiB):\n", t.n, (size_t)g->cache.n_entries,
           g->cache.bytes >> 10);
    report("hit ", hit, n_hit);
    report("miss", miss, n_miss);
    free(hit);
    free(miss);
    free(mask);
    grammar_release(g);
    gvocab_destroy(v);
    free_vocab(&t);
}

TEST_LIST(T(masks_equal_brute_force), T(end_tokens_and_errors), T(cache_shared_across_matchers),
          T(cache_evicts_least_recent),
          T(string_loop_fast_path), T(bounded_string_chain), T(loop_sets_across_threads),
          T(dfa_full_falls_back), T(mask_timing_128k))
