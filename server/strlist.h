/*
 * strlist.h - comma-separated lists from the configuration (allowed-hosts,
 * allowed-origins, served-model-name): items are trimmed of spaces and
 * empty items are skipped.  Pure functions; any thread.
 */
#ifndef LLAMAD_STRLIST_H
#define LLAMAD_STRLIST_H

#include <stddef.h>

/*
 * The next item of the list at *p: returns 1 and sets *item and *len (not
 * NUL-terminated), advancing *p past it; returns 0 at the end.  A NULL
 * list is empty.
 */
int strlist_next(const char **p, const char **item, size_t *len);

/*
 * Whether the list holds the n bytes at s as one item (ASCII case folded
 * when nocase).  An empty s is never found.
 */
int strlist_has(const char *list, const char *s, size_t n, int nocase);

/*
 * Copy the list's first item into out (cap bytes, NUL-terminated).
 * Returns its length, 0 when the list is empty, or ERR_TOOLONG when it
 * does not fit (out is then "").
 */
int strlist_first(const char *list, char *out, size_t cap);

#endif
