/*
 * regex.h - the stages of the regular-expression and choice compilers,
 * private to engine/grammar/ (grammar.h holds the public entry points).
 *
 *   regex_parse.c   pattern text -> syntax tree of code point sets
 *   regex_dfa.c     tree -> Thompson NFA over bytes -> DFA (subset
 *                   construction), dead states pruned
 *   choice.c        a JSON array of strings -> the DFA of their trie
 *   regex.c         a DFA -> right-linear rules of a gbuild_t, and the
 *                   grammar.h entry points (regex_build, grammar_from_regex,
 *                   grammar_from_choice)
 *
 * The stages before regex.c know nothing of the builder, so the DFA can be
 * tested alone.  Pure functions over caller-owned memory; any thread.
 */
#ifndef LLAMAD_GRAMMAR_REGEX_H
#define LLAMAD_GRAMMAR_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "grammar.h"

/* Caps on one pattern; each exceeded is ERR_FULL with a message naming it. */
#define RX_MAX_PATTERN  65536       /* bytes of pattern text */
#define RX_MAX_DEPTH    64          /* nesting of groups */
#define RX_MAX_REPEAT   10000       /* a finite bound of {m,n} */
#define RX_MAX_NFA      50000       /* Thompson NFA states (counted repetition copies x) */
#define RX_MAX_WORK     30000000u   /* NFA state visits of the subset construction */
#define RX_MAX_POOL     (1u << 22)  /* NFA states over all DFA state sets (16 MiB) */

/* Caps of guided_choice. */
#define CHOICE_MAX_ITEMS 1024       /* strings in the list */
#define CHOICE_MAX_LEN   4096       /* bytes of one string */
#define CHOICE_MAX_TOTAL (1u << 20) /* bytes of all strings together */

/*
 * Make room for need elements of elem bytes in the array *pp of *cap
 * (doubling); 0 or ERR_NOMEM (the array is unchanged then).
 */
int rx_grow(void *pp, uint32_t *cap, uint32_t need, size_t elem);

/* ------------------------------------------------------------------ syntax tree */

enum { RX_SET = 1, RX_CAT, RX_ALT, RX_REP };

/*
 * One node.  RX_SET: one code point of rng[a .. a+n) (inclusive ranges,
 * sorted, disjoint; n 0: nothing).  RX_CAT / RX_ALT: the children
 * kids[a .. a+n) in sequence / as alternatives (RX_CAT with n 0 is the
 * empty string).  RX_REP: child a repeated min..max times (max
 * RX_UNBOUNDED: no upper bound).
 */
#define RX_UNBOUNDED UINT32_MAX
typedef struct {
    uint32_t kind;
    uint32_t a, n;
    uint32_t min, max;
} rx_node_t;

typedef struct {
    rx_node_t *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t *kids;
    uint32_t n_kids, cap_kids;
    uint32_t (*rng)[2];
    uint32_t n_rng, cap_rng;
    uint32_t root;
} rx_tree_t;

/*
 * Parse pattern re[0..len) (UTF-8, the ECMAScript subset of README.md)
 * into *t, with flags (REGEX_SEARCH, REGEX_JSON_STRING of grammar.h)
 * applied: the tree's language is exactly what the grammar will match.
 * 0, or ERR_INVALID (malformed), ERR_UNSUPPORTED (backreferences,
 * lookaround, named groups, flags, anchors inside), ERR_FULL (a cap),
 * ERR_NOMEM, with err naming the cause.  *t is to be closed either way.
 */
int rx_parse(rx_tree_t *t, const char *re, size_t len, unsigned flags, char *err, size_t errlen);
void rx_tree_close(rx_tree_t *t);

/* ------------------------------------------------------------------ DFA over bytes */

typedef struct {
    uint8_t lo, hi;             /* the bytes lo..hi inclusive */
    uint32_t to;                /* go to this state */
} rx_edge_t;

/*
 * A DFA: state 0 is the start; state s has the edges
 * edges[first[s] .. first[s+1]), sorted by byte and disjoint.  Every state
 * reaches an accepting one (no dead states).
 */
typedef struct {
    uint32_t n_states;
    uint8_t *accept;            /* [n_states] */
    uint32_t *first;            /* [n_states + 1] */
    rx_edge_t *edges;           /* [first[n_states]] */
} rx_dfa_t;

/*
 * The DFA of t's language, at most max_states states.  0, or ERR_FULL
 * (more states, more than RX_MAX_NFA NFA states, or RX_MAX_WORK),
 * ERR_INVALID (the language is empty), ERR_NOMEM.  *d is to be closed.
 */
int rx_dfa_build(rx_dfa_t *d, const rx_tree_t *t, uint32_t max_states, char *err, size_t errlen);
/* Pattern to DFA: rx_parse then rx_dfa_build. */
int rx_compile(rx_dfa_t *d, const char *re, size_t len, unsigned flags, uint32_t max_states,
               char *err, size_t errlen);
void rx_dfa_close(rx_dfa_t *d);
/*
 * A rule of b matching the regex re (as regex_build, flags alike) whose
 * matches have min..max code points (max GB_INF: no upper bound): the
 * product of its DFA with a count, for JSON Schema's pattern beside
 * minLength / maxLength.  GB_NONE on failure (the builder holds the error).
 */
uint32_t regex_build_counted(gbuild_t *b, const char *re, size_t len, unsigned flags, uint32_t min,
                             uint32_t max);
/* 1 when d accepts s[0..n) whole, else 0. */
int rx_dfa_match(const rx_dfa_t *d, const void *s, size_t n);
/*
 * Drop the states that reach no accepting state and renumber the rest,
 * merging adjacent edges to one target.  ERR_INVALID when the start is
 * dead (the language is empty), ERR_NOMEM.
 */
int rx_dfa_prune(rx_dfa_t *d, char *err, size_t errlen);

/*
 * The trie DFA of guided_choice's JSON array json[0..len) (NUL-terminated
 * or not): 0, or ERR_INVALID (not an array of 1..CHOICE_MAX_ITEMS strings,
 * or invalid UTF-8), ERR_FULL (CHOICE_MAX_LEN, CHOICE_MAX_TOTAL),
 * ERR_NOMEM; err names guided_choice.  *d is to be closed.
 */
int choice_dfa(rx_dfa_t *d, const char *json, size_t len, char *err, size_t errlen);

/*
 * Rules of b spelling d's language (regex.c); returns the start state's
 * rule, or GB_NONE when the builder has failed (it holds the error).
 */
uint32_t rx_dfa_emit(gbuild_t *b, const rx_dfa_t *d);

#endif
