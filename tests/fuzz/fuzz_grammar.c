/*
 * fuzz_grammar.c - libFuzzer target for the grammar compilers and the
 * byte matcher (engine/grammar/).
 *
 * Input: byte 0 picks the compiler (value % 4: GBNF, regular expression,
 * JSON Schema, choice list); the bytes after it up to the first NUL are
 * the source, and the bytes after that NUL are fed to a matcher of the
 * compiled grammar.  Checks: a compiler returns 0 with a grammar or a
 * negative code with none and a non-empty message; the matcher agrees
 * with itself fed whole and byte by byte; a refused byte leaves the state
 * unchanged; a state that can take no more bytes is accepting (gm_feed
 * never leaves the matcher where no string of the language can be
 * completed).  The caps are lowered so that each input stays fast.
 *
 * Build:  make tests/fuzz/fuzz_grammar (configure --enable-fuzzers), or by hand:
 *         clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iengine -include config.h \
 *             base/err.c base/buf.c base/utf8.c engine/grammar/{build,build_utf8,grammar,match,cache,gbnf}.c \
 *             tests/fuzz/fuzz_grammar.c -lcjson -lm -o fuzz_grammar
 * Run:    ./fuzz_grammar -rss_limit_mb=2048 -timeout=10 -dict=tests/fuzz/fuzz_grammar.dict \
 *             CORPUS_DIR tests/fuzz/seeds-grammar
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar.h"


#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); __builtin_trap(); } } while (0)

#define FEED_MAX 4096   /* matcher bytes per input: enough to reach deep states, cheap per run */

static int compile(unsigned which, const char *src, size_t len, grammar_t **g, char *err, size_t errlen)
{
    static const grammar_limits_t lim = { .max_rules = 2000, .max_elements = 20000, .max_repeat = 200 };
    switch (which % 4) {
    case 1: return grammar_from_regex(src, len, &lim, g, err, errlen);
    case 2: return grammar_from_json_schema(src, len, &lim, g, err, errlen);
    case 3: return grammar_from_choice(src, len, &lim, g, err, errlen);
    default: break;
    }
    return grammar_from_gbnf(src, len, &lim, g, err, errlen);
}

/* Feed p[0..n) whole, then byte by byte, and check that both agree. */
static void run_matcher(grammar_t *g, const uint8_t *p, size_t n)
{
    gmatch_t *m;
    if (gm_create(&m, g) != 0)
        return;
    int whole = gm_feed(m, p, n);
    int whole_acc = whole == 0 && gm_accepting(m);
    gm_reset(m);
    int bytes = 0;
    size_t i = 0;
    for (; i < n; i++) {
        int before_acc = gm_accepting(m), before_cont = gm_can_continue(m);
        int rc = gm_feed(m, p + i, 1);
        if (rc != 0) {
            CHECK(rc == ERR_INVALID || rc == ERR_FULL);
            /* refused: the state is as it was */
            CHECK(gm_accepting(m) == before_acc && gm_can_continue(m) == before_cont);
            bytes = rc;
            break;
        }
        CHECK(gm_can_continue(m) || gm_accepting(m));
    }
    if (whole != ERR_FULL && bytes != ERR_FULL) {
        CHECK((whole == 0) == (bytes == 0));
        CHECK(whole_acc == (bytes == 0 && gm_accepting(m)));
    }
    gm_destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned which = data[0];
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    const uint8_t *nul = memchr(rest, 0, n);
    size_t src_len = nul ? (size_t)(nul - rest) : n;

    /* The JSON Schema compiler wants its text NUL-terminated; all get a copy the sanitizer bounds. */
    char *src = malloc(src_len + 1);
    if (!src)
        return 0;
    memcpy(src, rest, src_len);
    src[src_len] = 0;

    char err[ERR_MSG_MAX];
    err[0] = 0;
    grammar_t *g = (grammar_t *)err;
    int rc = compile(which, src, src_len, &g, err, sizeof err);
    if (rc == 0) {
        CHECK(g != NULL);
        char *dump = grammar_dump(g);
        free(dump);
        if (nul) {
            size_t feed = n - src_len - 1;
            run_matcher(g, nul + 1, feed < FEED_MAX ? feed : FEED_MAX);
        }
        grammar_release(g);
    } else {
        CHECK(rc < 0 && g == NULL);
        CHECK(err[0] != 0 && memchr(err, 0, sizeof err) != NULL);
    }
    free(src);
    return 0;
}
