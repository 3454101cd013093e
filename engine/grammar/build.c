/*
 * build.c - gbuild_t: rules, interned byte classes and alternatives as
 * element arrays, with a sticky first error and the caps of
 * grammar_limits_t.  gb_literal, gb_seq and gb_repeat build on gb_alt;
 * gb_codepoints lives in build_utf8.c, gb_finish in grammar.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

/* ------------------------------------------------------------------ helpers */

/* Grow *p (elements of size sz) to hold at least need; 0 or ERR_NOMEM. */
static int grow(void **p, uint32_t *cap, uint32_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    uint64_t n = *cap ? (uint64_t)*cap * 2 : 16;
    while (n < need)
        n *= 2;
    if (n > UINT32_MAX / 2)
        return ERR_NOMEM;
    void *q = realloc(*p, (size_t)n * sz);
    if (q == NULL)
        return ERR_NOMEM;
    *p = q;
    *cap = (uint32_t)n;
    return 0;
}

static uint32_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

int gb_create(gbuild_t **out, const grammar_limits_t *lim)
{
    gbuild_t *b = calloc(1, sizeof *b);
    *out = NULL;
    if (b == NULL)
        return ERR_NOMEM;
    if (lim != NULL)
        b->lim = *lim;
    if (b->lim.max_rules == 0)
        b->lim.max_rules = GB_DEF_MAX_RULES;
    if (b->lim.max_elements == 0)
        b->lim.max_elements = GB_DEF_MAX_ELEMENTS;
    if (b->lim.max_repeat == 0)
        b->lim.max_repeat = GB_DEF_MAX_REPEAT;
    *out = b;
    return 0;
}

void gb_destroy(gbuild_t *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->n_rules; i++)
        free(b->rules[i].name);
    free(b->rules);
    free(b->alts);
    free(b->elems);
    free(b->classes);
    free(b->class_hash);
    free(b->name_hash);
    free(b);
}

void gb_fail(gbuild_t *b, int code, const char *fmt, ...)
{
    if (b->failed)
        return;
    b->failed = code < 0 ? code : ERR_INVALID;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof b->msg, fmt, ap);
    va_end(ap);
}

int gb_failed(const gbuild_t *b)
{
    return b->failed;
}

static uint32_t nomem(gbuild_t *b)
{
    gb_fail(b, ERR_NOMEM, "grammar: out of memory");
    return GB_NONE;
}

/* ------------------------------------------------------------------ rules */

static uint32_t new_rule(gbuild_t *b, const char *name, size_t len)
{
    if (b->failed)
        return GB_NONE;
    if (b->n_rules >= b->lim.max_rules) {
        gb_fail(b, ERR_FULL, "grammar: more than %u rules (max_rules)", b->lim.max_rules);
        return GB_NONE;
    }
    if (grow((void **)&b->rules, &b->cap_rules, b->n_rules + 1, sizeof *b->rules) < 0)
        return nomem(b);
    grule_b_t *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof *r);
    if (name != NULL) {
        if (len > GB_MAX_NAME)
            len = GB_MAX_NAME;
        r->name = malloc(len + 1);
        if (r->name == NULL)
            return nomem(b);
        memcpy(r->name, name, len);
        r->name[len] = '\0';
    }
    return b->n_rules++;
}

uint32_t gb_rule(gbuild_t *b, const char *name)
{
    return new_rule(b, name, name != NULL ? strlen(name) : 0);
}

/* Rehash the name table into cap slots (a power of two). */
static int name_rehash(gbuild_t *b, uint32_t cap)
{
    uint32_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return ERR_NOMEM;
    for (uint32_t i = 0; i < b->name_hash_cap; i++) {
        uint32_t id = b->name_hash[i];
        if (id == 0)
            continue;
        const char *nm = b->rules[id - 1].name;
        uint32_t h = hash_bytes(nm, strlen(nm)) & (cap - 1);
        while (t[h] != 0)
            h = (h + 1) & (cap - 1);
        t[h] = id;
    }
    free(b->name_hash);
    b->name_hash = t;
    b->name_hash_cap = cap;
    return 0;
}

uint32_t gb_named(gbuild_t *b, const char *name, size_t len)
{
    if (b->failed)
        return GB_NONE;
    if (len > GB_MAX_NAME)
        len = GB_MAX_NAME;
    if (b->name_hash_cap == 0 && name_rehash(b, 64) < 0)
        return nomem(b);
    uint32_t mask = b->name_hash_cap - 1, h = hash_bytes(name, len) & mask;
    for (; b->name_hash[h] != 0; h = (h + 1) & mask) {
        const char *nm = b->rules[b->name_hash[h] - 1].name;
        if (strlen(nm) == len && memcmp(nm, name, len) == 0)
            return b->name_hash[h] - 1;
    }
    uint32_t r = new_rule(b, name, len);
    if (r == GB_NONE)
        return GB_NONE;
    b->rules[r].by_name = 1;
    b->name_hash[h] = r + 1;
    if ((uint64_t)b->n_rules * 2 > b->name_hash_cap && name_rehash(b, b->name_hash_cap * 2) < 0)
        return nomem(b);
    return r;
}

/* ------------------------------------------------------------------ classes */

static int class_rehash(gbuild_t *b, uint32_t cap)
{
    uint32_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return ERR_NOMEM;
    for (uint32_t id = 0; id < b->n_classes; id++) {
        uint32_t h = hash_bytes(b->classes[id], 32) & (cap - 1);
        while (t[h] != 0)
            h = (h + 1) & (cap - 1);
        t[h] = id + 1;
    }
    free(b->class_hash);
    b->class_hash = t;
    b->class_hash_cap = cap;
    return 0;
}

uint32_t gb_class(gbuild_t *b, const uint8_t set[32])
{
    if (b->failed)
        return GB_NONE;
    if (b->class_hash_cap == 0 && class_rehash(b, 64) < 0)
        return nomem(b);
    uint32_t mask = b->class_hash_cap - 1, h = hash_bytes(set, 32) & mask;
    for (; b->class_hash[h] != 0; h = (h + 1) & mask)
        if (memcmp(b->classes[b->class_hash[h] - 1], set, 32) == 0)
            return b->class_hash[h] - 1;
    if (grow((void **)&b->classes, &b->cap_classes, b->n_classes + 1, sizeof *b->classes) < 0)
        return nomem(b);
    uint32_t id = b->n_classes++;
    memcpy(b->classes[id], set, 32);
    b->class_hash[h] = id + 1;
    if ((uint64_t)b->n_classes * 2 > b->class_hash_cap && class_rehash(b, b->class_hash_cap * 2) < 0)
        return nomem(b);
    return id;
}

uint32_t gb_range(gbuild_t *b, uint8_t lo, uint8_t hi)
{
    uint8_t set[32] = { 0 };
    for (unsigned c = lo; c <= hi; c++)
        set[c >> 3] |= (uint8_t)(1u << (c & 7));
    return gb_class(b, set);
}

/* ------------------------------------------------------------------ alternatives */

void gb_alt(gbuild_t *b, uint32_t rule, const gelem_t *e, size_t n)
{
    if (b->failed)
        return;
    if (rule >= b->n_rules) {
        gb_fail(b, ERR_INVALID, "grammar: alternative for unknown rule %u", rule);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int ok = (e[i].kind == GE_BYTES && e[i].v < b->n_classes) ||
                 (e[i].kind == GE_REF && e[i].v < b->n_rules);
        if (!ok) {
            gb_fail(b, ERR_INVALID, "grammar: bad element (kind %u, id %u)", e[i].kind, e[i].v);
            return;
        }
    }
    /* Each alternative also costs its end marker once frozen. */
    if ((uint64_t)b->n_elems + b->n_alts + n + 1 > b->lim.max_elements) {
        gb_fail(b, ERR_FULL, "grammar: more than %u elements (max_elements)", b->lim.max_elements);
        return;
    }
    if (grow((void **)&b->elems, &b->cap_elems, b->n_elems + (uint32_t)n, sizeof *b->elems) < 0 ||
        grow((void **)&b->alts, &b->cap_alts, b->n_alts + 1, sizeof *b->alts) < 0) {
        nomem(b);
        return;
    }
    if (n > 0)
        memcpy(b->elems + b->n_elems, e, n * sizeof *e);
    b->alts[b->n_alts++] = (galt_t){ rule, b->n_elems, (uint32_t)n };
    b->n_elems += (uint32_t)n;
    b->rules[rule].n_alts++;
}

/* ------------------------------------------------------------------ helpers over gb_alt */

uint32_t gb_literal(gbuild_t *b, const void *s, size_t n)
{
    const uint8_t *p = s;
    if (n > b->lim.max_elements) {
        gb_fail(b, ERR_FULL, "grammar: a literal of %zu bytes is over max_elements", n);
        return GB_NONE;
    }
    uint32_t r = gb_rule(b, NULL);
    gelem_t *e = malloc((n ? n : 1) * sizeof *e);
    if (e == NULL)
        return nomem(b);
    for (size_t i = 0; i < n && !b->failed; i++)
        e[i] = ge_bytes(gb_range(b, p[i], p[i]));
    gb_alt(b, r, e, n);
    free(e);
    return b->failed ? GB_NONE : r;
}

uint32_t gb_seq(gbuild_t *b, const gelem_t *e, size_t n)
{
    uint32_t r = gb_rule(b, NULL);
    gb_alt(b, r, e, n);
    return b->failed ? GB_NONE : r;
}

/*
 * x{min,max}: min copies of x, then either R := x R | empty (max GB_INF)
 * or a chain of max - min optional rules O_i := x O_{i+1} | empty whose
 * last is O := x | empty.  Nesting the options (rather than listing
 * max - min alternatives of growing length) keeps the grammar linear in
 * max and the matcher's states free of duplicates.
 */
uint32_t gb_repeat(gbuild_t *b, gelem_t x, uint32_t min, uint32_t max)
{
    if (b->failed)
        return GB_NONE;
    if (max != GB_INF && min > max) {
        gb_fail(b, ERR_INVALID, "grammar: repetition {%u,%u} has min > max", min, max);
        return GB_NONE;
    }
    uint32_t top = max != GB_INF ? max : min;
    if (top > b->lim.max_repeat) {
        gb_fail(b, ERR_FULL, "grammar: repetition bound %u is over max_repeat (%u)", top,
                b->lim.max_repeat);
        return GB_NONE;
    }
    /* The tail after the min copies: GB_NONE when there is none. */
    uint32_t tail = GB_NONE;
    if (max == GB_INF) {
        tail = gb_rule(b, NULL);
        gelem_t e[2] = { x, ge_ref(tail) };
        gb_alt(b, tail, e, 2);
        gb_alt(b, tail, NULL, 0);
    } else {
        for (uint32_t i = min; i < max && !b->failed; i++) {
            uint32_t o = gb_rule(b, NULL);
            gelem_t e[2] = { x, ge_ref(tail) };
            gb_alt(b, o, e, tail == GB_NONE ? 1 : 2);
            gb_alt(b, o, NULL, 0);
            tail = o;
        }
    }
    if (b->failed)
        return GB_NONE;
    uint64_t n = (uint64_t)min + (tail != GB_NONE);
    if (n > b->lim.max_elements) {
        gb_fail(b, ERR_FULL, "grammar: repetition is over max_elements (%u)", b->lim.max_elements);
        return GB_NONE;
    }
    gelem_t *e = malloc((n ? n : 1) * sizeof *e);
    if (e == NULL)
        return nomem(b);
    for (uint32_t i = 0; i < min; i++)
        e[i] = x;
    if (tail != GB_NONE)
        e[min] = ge_ref(tail);
    uint32_t r = gb_seq(b, e, (size_t)n);
    free(e);
    return r;
}
