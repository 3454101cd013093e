/*
 * choice.c - vLLM's guided_choice: a JSON array of strings to the DFA of
 * the trie of their bytes (a trie is a DFA whose every state but the root
 * has one edge in), emitted into a grammar by regex.c like a regex's DFA.
 * Duplicates are harmless (they end at the same trie node).
 */
#include "regex.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/err.h"
#include "base/utf8.h"

#define NIL UINT32_MAX

/* A trie node: its children as a list sorted by byte. */
typedef struct {
    uint32_t child, sibling;
    uint8_t byte, accept;
} tnode_t;

typedef struct {
    tnode_t *n;
    uint32_t len, cap;
} trie_t;

static uint32_t trie_new(trie_t *t, uint8_t byte, uint32_t sibling)
{
    if (t->len == t->cap) {
        uint32_t c = t->cap ? t->cap * 2 : 256;
        tnode_t *q = realloc(t->n, (size_t)c * sizeof *q);
        if (!q)
            return NIL;
        t->n = q;
        t->cap = c;
    }
    t->n[t->len] = (tnode_t){ NIL, sibling, byte, 0 };
    return t->len++;
}

/* Add s[0..n) to the trie: 0 or ERR_NOMEM. */
static int trie_add(trie_t *t, const uint8_t *s, size_t n)
{
    uint32_t q = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t prev = NIL, c = t->n[q].child;
        while (c != NIL && t->n[c].byte < s[i]) {
            prev = c;
            c = t->n[c].sibling;
        }
        if (c == NIL || t->n[c].byte != s[i]) {
            uint32_t x = trie_new(t, s[i], c);
            if (x == NIL)
                return ERR_NOMEM;
            if (prev == NIL)
                t->n[q].child = x;
            else
                t->n[prev].sibling = x;
            c = x;
        }
        q = c;
    }
    t->n[q].accept = 1;
    return 0;
}

/* The trie as an rx_dfa_t (node ids are state ids; the root is 0). */
static int trie_dfa(const trie_t *t, rx_dfa_t *d)
{
    uint32_t n_e = t->len - 1;                  /* every node but the root has one edge in */
    d->accept = calloc(t->len, 1);
    d->first = calloc((size_t)t->len + 1, sizeof *d->first);
    d->edges = malloc(((size_t)n_e + 1) * sizeof *d->edges);
    if (!d->accept || !d->first || !d->edges)
        return ERR_NOMEM;
    uint32_t e = 0;
    for (uint32_t q = 0; q < t->len; q++) {
        d->first[q] = e;
        d->accept[q] = t->n[q].accept;
        for (uint32_t c = t->n[q].child; c != NIL; c = t->n[c].sibling)
            d->edges[e++] = (rx_edge_t){ t->n[c].byte, t->n[c].byte, c };
    }
    d->first[t->len] = e;
    d->n_states = t->len;
    return 0;
}

int choice_dfa(rx_dfa_t *d, const char *json, size_t len, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (!json)
        return err_set(err, errlen, ERR_INVALID, "guided_choice: no list");
    cJSON *arr = cJSON_ParseWithLength(json, len);
    trie_t t = { 0 };
    int rc = 0;
    if (!arr || !cJSON_IsArray(arr)) {
        rc = err_set(err, errlen, ERR_INVALID, "guided_choice: not a JSON array of strings");
        goto out;
    }
    int n = cJSON_GetArraySize(arr);
    if (n < 1 || n > CHOICE_MAX_ITEMS) {
        rc = err_set(err, errlen, ERR_INVALID, "guided_choice: %d strings; 1 to %d are allowed",
                     n, CHOICE_MAX_ITEMS);
        goto out;
    }
    if (trie_new(&t, 0, NIL) == NIL) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t total = 0;
    int i = 0;
    for (cJSON *it = arr->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring) {
            rc = err_set(err, errlen, ERR_INVALID, "guided_choice: item %d is not a string", i);
            goto out;
        }
        size_t sl = strlen(it->valuestring);
        if (sl > CHOICE_MAX_LEN) {
            rc = err_set(err, errlen, ERR_FULL, "guided_choice: item %d is longer than %d bytes",
                         i, CHOICE_MAX_LEN);
            goto out;
        }
        if (!utf8_valid(it->valuestring, sl)) {
            rc = err_set(err, errlen, ERR_INVALID, "guided_choice: item %d is not valid UTF-8", i);
            goto out;
        }
        total += sl;
        if (total > CHOICE_MAX_TOTAL) {
            rc = err_set(err, errlen, ERR_FULL, "guided_choice: the strings total more than %u bytes",
                         CHOICE_MAX_TOTAL);
            goto out;
        }
        if ((rc = trie_add(&t, (const uint8_t *)it->valuestring, sl)) != 0)
            goto out;
    }
    rc = trie_dfa(&t, d);
out:
    if (rc == ERR_NOMEM)
        err_set(err, errlen, rc, "guided_choice: out of memory");
    if (rc)
        rx_dfa_close(d);
    free(t.n);
    cJSON_Delete(arr);
    return rc;
}
