/*
 * grammar.h - context-free grammars over bytes, the parser state of one
 * request, and the token masks that keep a model's output inside a
 * grammar.  Plain C, no model knowledge: the vocabulary arrives as byte
 * strings (gvocab_create).
 *
 * A grammar is a set of rules; a rule is a list of alternatives; an
 * alternative is a sequence of elements, each either a byte class (a set
 * of byte values, one byte of input) or a reference to a rule.  An
 * alternative with no elements matches the empty string.  The language
 * is what the root rule matches.  Repetition, options and Unicode
 * classes are built from these by the helpers below (gb_repeat,
 * gb_codepoints), so the matcher knows only bytes, sequences, alternation
 * and recursion.
 *
 * The compilers (gbnf.c, regex.c, json_schema.c) build grammars through
 * gbuild_t; gb_finish checks the result and freezes it into a grammar_t.
 *
 * Threads: a gbuild_t and a gmatch_t belong to one thread at a time.  A
 * grammar_t and a gvocab_t are immutable once made (the grammar's mask
 * cache is internally locked) and may be shared; grammar_t is reference
 * counted.
 *
 * Errors use base/err.h codes: ERR_INVALID (malformed or unusable input,
 * with a message fit for an HTTP 400), ERR_FULL (a documented cap
 * exceeded; the message names the cap), ERR_NOMEM.
 */
#ifndef LLAMAD_GRAMMAR_H
#define LLAMAD_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#define GB_NONE UINT32_MAX      /* "no rule": what a builder call returns once it has failed */
#define GB_INF  UINT32_MAX      /* gb_repeat: no upper bound */

/* Caps on one grammar, checked as it is built.  Zero fields take the defaults. */
typedef struct {
    uint32_t max_rules;         /* default 20000 */
    uint32_t max_elements;      /* elements over all alternatives; default 400000 */
    uint32_t max_repeat;        /* largest finite bound of gb_repeat; default 10000 */
} grammar_limits_t;

/* ------------------------------------------------------------------ building */

typedef struct gbuild gbuild_t;
typedef struct grammar grammar_t;

enum { GE_BYTES = 1, GE_REF = 2 };
typedef struct {
    uint32_t kind;              /* GE_BYTES or GE_REF */
    uint32_t v;                 /* GE_BYTES: a class id from gb_class; GE_REF: a rule id */
} gelem_t;

static inline gelem_t ge_ref(uint32_t rule) { gelem_t e = { GE_REF, rule }; return e; }
static inline gelem_t ge_bytes(uint32_t cls) { gelem_t e = { GE_BYTES, cls }; return e; }

/* A new builder (lim NULL: the defaults).  ERR_NOMEM. */
int gb_create(gbuild_t **out, const grammar_limits_t *lim);
/* Free a builder that gb_finish will not be called on.  NULL is fine. */
void gb_destroy(gbuild_t *b);

/*
 * Record a failure: the first one sticks, later builder calls do nothing
 * and return GB_NONE, and gb_finish returns it.  Compilers use it for
 * their own errors ("json_schema: keyword 'not' is not supported").
 */
void gb_fail(gbuild_t *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The sticky failure so far (0 when none). */
int gb_failed(const gbuild_t *b);

/* A new rule with no alternatives.  name may be NULL (shown as "_N" in dumps). */
uint32_t gb_rule(gbuild_t *b, const char *name);
/*
 * The rule called name (len bytes), created on first use: for grammars
 * whose rules are referred to before they are defined (GBNF).  A rule
 * looked up this way and never given an alternative fails gb_finish with
 * "rule 'x' is used but not defined".
 */
uint32_t gb_named(gbuild_t *b, const char *name, size_t len);
/* The class id of a byte set (bit b of set[b / 8] = byte value b allowed); interned. */
uint32_t gb_class(gbuild_t *b, const uint8_t set[32]);
/* The class of the bytes lo..hi inclusive. */
uint32_t gb_range(gbuild_t *b, uint8_t lo, uint8_t hi);
/* Add an alternative e[0..n) to rule (n 0: the empty string). */
void gb_alt(gbuild_t *b, uint32_t rule, const gelem_t *e, size_t n);

/* A new rule matching exactly the bytes s[0..n). */
uint32_t gb_literal(gbuild_t *b, const void *s, size_t n);
/* A new rule matching e[0..n) in sequence. */
uint32_t gb_seq(gbuild_t *b, const gelem_t *e, size_t n);
/* A new rule matching x repeated min..max times (max GB_INF: unbounded;
 * min <= max, finite bounds <= max_repeat, else ERR_FULL / ERR_INVALID). */
uint32_t gb_repeat(gbuild_t *b, gelem_t x, uint32_t min, uint32_t max);
/*
 * A new rule matching one UTF-8 encoded code point in the union of the
 * inclusive ranges r[i][0]..r[i][1] (negate: in none of them).  Ranges are
 * clipped to U+0000..U+10FFFF without the surrogates U+D800..U+DFFF, which
 * are never matched.  A set that is empty after that is ERR_INVALID.
 */
uint32_t gb_codepoints(gbuild_t *b, const uint32_t (*r)[2], size_t n, int negate);

/*
 * Check and freeze: every referenced rule defined, no left recursion
 * ("rule 'x' is left-recursive"), the language not empty ("the grammar
 * matches nothing"), the caps.  Always consumes b.  On success *out holds
 * one reference.  On failure *out is NULL and err says why (the sticky
 * failure first, if any).
 */
int gb_finish(gbuild_t *b, uint32_t root, grammar_t **out, char *err, size_t errlen);

grammar_t *grammar_ref(grammar_t *g);
void grammar_release(grammar_t *g);      /* NULL is fine */
uint32_t grammar_n_rules(const grammar_t *g);
/* The grammar in GBNF-like text, for tests and --debug logs; malloc'd, NULL on ENOMEM. */
char *grammar_dump(const grammar_t *g);

/* ------------------------------------------------------------------ matching bytes */

typedef struct gmatch gmatch_t;

/* A parser at the start of g's language (takes a reference on g).  ERR_NOMEM. */
int gm_create(gmatch_t **out, grammar_t *g);
void gm_destroy(gmatch_t *m);            /* NULL is fine */
/* Back to the start. */
void gm_reset(gmatch_t *m);

/*
 * Advance over bytes p[0..n).  0, or ERR_INVALID when they cannot extend
 * what was accepted so far into a string of the language (the state is
 * then unchanged), or ERR_FULL when the parser state grew past its caps
 * (an ambiguous grammar; state unchanged).
 */
int gm_feed(gmatch_t *m, const void *p, size_t n);
/* Whether the bytes accepted so far are a whole string of the language. */
int gm_accepting(const gmatch_t *m);
/* Whether some byte may still follow. */
int gm_can_continue(const gmatch_t *m);

/* ------------------------------------------------------------------ token masks */

typedef struct gvocab gvocab_t;

/*
 * The bytes token id spells when it is generated, or NULL for a token a
 * grammar never allows (control tokens, tokens with no text).
 */
typedef const void *(*gvocab_piece_fn)(void *ctx, int32_t id, size_t *len);

/*
 * The vocabulary as a byte trie, built once per model.  end[0..n_end) are
 * the end-of-generation tokens: allowed exactly where gm_accepting().
 * ERR_INVALID (n_vocab 0, an end id out of range), ERR_NOMEM.
 */
int gvocab_create(gvocab_t **out, uint32_t n_vocab, gvocab_piece_fn piece, void *ctx,
                  const int32_t *end, size_t n_end, char *err, size_t errlen);
void gvocab_destroy(gvocab_t *v);        /* NULL is fine */
uint32_t gvocab_n_vocab(const gvocab_t *v);
/* Words of a mask: (n_vocab + 31) / 32. */
size_t gvocab_mask_words(const gvocab_t *v);

/*
 * The tokens allowed next: bit (id % 32) of mask[id / 32] set when token
 * id may follow what m has accepted (all its bytes extend the state; an
 * end token when m is accepting).  Returns how many are allowed (0: none
 * can follow), or a negative err code.  Results are cached in the grammar
 * by parser state, so a state seen before costs a copy.  Thread-safe
 * across different gmatch_t of one grammar.
 */
int64_t gm_mask(gmatch_t *m, const gvocab_t *v, uint32_t *mask);

/*
 * Advance over token id's bytes: 0, or ERR_INVALID when the token is not
 * allowed (state unchanged).  An end token is accepted when m is
 * accepting and leaves the state as it is.
 */
int gm_feed_token(gmatch_t *m, const gvocab_t *v, int32_t id);

/* ------------------------------------------------------------------ compilers */

/* GBNF text (llama.cpp's syntax; the root rule is "root"). */
int grammar_from_gbnf(const char *text, size_t len, const grammar_limits_t *lim,
                      grammar_t **out, char *err, size_t errlen);

/* flags for regex_build */
#define REGEX_SEARCH      1u    /* JSON Schema "pattern" semantics: unanchored unless ^ / $ */
#define REGEX_JSON_STRING 2u    /* inside a JSON string: '"', '\\' and bytes < 0x20 are never
                                   produced (a class that would allow them excludes them) */

/*
 * A rule of b matching the ECMAScript-subset regular expression re
 * (docs/API.md lists the subset), through a DFA of at most
 * REGEX_MAX_STATES states.  GB_NONE on failure (the builder holds the error).
 */
#define REGEX_MAX_STATES 2000
uint32_t regex_build(gbuild_t *b, const char *re, size_t len, unsigned flags);

/* A whole grammar from a regular expression (vLLM guided_regex: the whole output matches). */
int grammar_from_regex(const char *re, size_t len, const grammar_limits_t *lim,
                       grammar_t **out, char *err, size_t errlen);

/* One of a list of strings (vLLM guided_choice): json is a JSON array of strings. */
int grammar_from_choice(const char *json, size_t len, const grammar_limits_t *lim,
                        grammar_t **out, char *err, size_t errlen);

/*
 * JSON Schema text (json NUL-terminated, len bytes) to a grammar of the
 * JSON texts it accepts; docs/API.md lists the keywords and the caps.  A
 * keyword that is not supported is ERR_UNSUPPORTED naming it; a malformed
 * schema ERR_INVALID.  json NULL: any JSON object (response_format json_object).
 */
int grammar_from_json_schema(const char *json, size_t len, const grammar_limits_t *lim,
                             grammar_t **out, char *err, size_t errlen);

/*
 * A model's tool calls (tool_calls.c): json is a spec object naming the
 * text around each call (prefix, suffix, separator), the call object's
 * two keys (name_key, args_key), max_calls (0: no bound; at least one
 * call) and the tools, [{"name", "parameters": JSON Schema}] (at most
 * GRAMMAR_MAX_TOOLS).  The language: calls of the form
 *   prefix {"<name_key>": "<a tool's name>", "<args_key>": <its arguments>} suffix
 * joined by separator, JSON whitespace as in JSON Schema grammars, the
 * arguments accepted by that tool's schema.  A schema the JSON Schema
 * compiler refuses fails the whole spec, the message naming tools[i].
 */
#define GRAMMAR_MAX_TOOLS 128
int grammar_from_tool_calls(const char *json, size_t len, const grammar_limits_t *lim,
                            grammar_t **out, char *err, size_t errlen);

#endif
