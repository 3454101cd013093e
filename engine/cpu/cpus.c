/*
 * cpus.c - how many CPUs this process may use (cpus.h).
 *
 * /proc/self/cgroup names the process's cgroup in each hierarchy, one
 * line "ID:CONTROLLERS:PATH": ID 0 with no controllers is cgroup v2,
 * whose quota is PATH/cpu.max ("max PERIOD" or "QUOTA PERIOD", in
 * microseconds); a v1 line whose controllers include `cpu` has its quota
 * in PATH/cpu.cfs_quota_us (-1: none) over PATH/cpu.cfs_period_us.
 * PATH is relative to the hierarchy's root, and a mount may show only a
 * subtree of it: /proc/self/mountinfo gives each cgroup mount's root
 * (field 4) and place (field 5), so the folder of PATH is the place plus
 * PATH less the mount's root (a container without a cgroup namespace
 * sees /docker/ID/x in /proc/self/cgroup, mounted from root /docker/ID).
 * A PATH outside a mount's root (another subtree, or "/.." under a
 * cgroup namespace) is not under that mount.  A quota on any ancestor
 * binds too, so the walk goes up PATH to the mount's root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_ALLOC, sched_getaffinity */
#endif
#include "cpus.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CG_PATH_MAX 4096
#define CG_FILE_MAX (1 << 20) /* /proc/self/mountinfo: a line per mount */
#define CG_MOUNTS_MAX 16      /* the cgroup mounts that matter: v2's and v1 cpu's */

/* The CPUs in the affinity mask; the online count where it cannot be read. */
static int affinity_count(void)
{
    for (int n = 1024; n <= (1 << 20); n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (set == NULL)
            break;
        size_t sz = CPU_ALLOC_SIZE(n);
        int rc = sched_getaffinity(0, sz, set), e = errno;
        int c = rc == 0 ? CPU_COUNT_S(sz, set) : 0;
        CPU_FREE(set);
        if (rc == 0)
            return c > 0 ? c : 1;
        if (e != EINVAL) /* EINVAL: the kernel's mask is wider */
            break;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < INT_MAX ? (int)n : 1;
}

/* Up to cap - 1 bytes of the file at path, NUL-terminated; its length, or -1. */
static long read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return -1;
    buf[n] = 0;
    return (long)n;
}

/* A decimal integer at *s (leading blanks allowed), *s moved past it; 0 if none. */
static int parse_ll(const char **s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(*s, &end, 10);
    if (end == *s || errno != 0)
        return 0;
    *s = end;
    *out = v;
    return 1;
}

/* quota / period in whole CPUs, rounded up; 0 for no quota or nonsense. */
static int quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    long long n = quota / period + (quota % period != 0);
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* The quota in dir (a cgroup's folder) in whole CPUs; 0 for none. */
static int quota_in(const char *dir, int v2)
{
    char path[CG_PATH_MAX], text[128];
    long long q, p;
    if (v2) {
        if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path || read_small(path, text, sizeof text) < 0)
            return 0;
        const char *s = text;
        if (!parse_ll(&s, &q) || !parse_ll(&s, &p)) /* "max PERIOD": no quota */
            return 0;
        return quota_cpus(q, p);
    }
    if (snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) >= (int)sizeof path ||
        read_small(path, text, sizeof text) < 0)
        return 0;
    const char *s = text;
    if (!parse_ll(&s, &q))
        return 0;
    if (snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) >= (int)sizeof path ||
        read_small(path, text, sizeof text) < 0)
        return 0;
    s = text;
    if (!parse_ll(&s, &p))
        return 0;
    return quota_cpus(q, p);
}

/*
 * The smallest quota on cgroup `path` (from /proc/self/cgroup, less the
 * mount's root: below) and its ancestors, under the mount at `mount`; 0
 * for none.  *where gets the folder that set it.
 */
static int quota_walk(const char *mount, const char *path, int v2, char *where, size_t wherelen)
{
    char rel[CG_PATH_MAX], dir[CG_PATH_MAX];
    if (snprintf(rel, sizeof rel, "%s", path) >= (int)sizeof rel || rel[0] != '/')
        return 0;
    int best = 0;
    for (;;) {
        size_t len = strlen(rel);
        while (len > 1 && rel[len - 1] == '/') /* "/a/b/" is "/a/b" */
            rel[--len] = 0;
        int root = len == 1;
        if (snprintf(dir, sizeof dir, "%s%s", mount, root ? "" : rel) < (int)sizeof dir) {
            int q = quota_in(dir, v2);
            if (q > 0 && (best == 0 || q < best)) {
                best = q;
                snprintf(where, wherelen, "%s", dir);
            }
        }
        if (root)
            return best;
        char *slash = strrchr(rel, '/');
        slash[slash == rel] = 0; /* "/a" becomes "/", "/a/b" "/a" */
    }
}

/* Whether the comma list s (len bytes) has the item "cpu". */
static int has_cpu(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        if (j - i == 3 && memcmp(s + i, "cpu", 3) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

typedef struct {
    char root[CG_PATH_MAX]; /* the subtree of the hierarchy it shows */
    char at[CG_PATH_MAX];   /* where it is mounted */
    int v2;                 /* cgroup2; else a v1 hierarchy with the cpu controller */
} cg_mount_t;

/* mountinfo's octal escapes (\040 a space, \011, \012, \134) undone in place. */
static void unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

/*
 * The cgroup2 mounts and the v1 mounts of the cpu controller in mountinfo
 * text (consumed): "ID PARENT MAJ:MIN ROOT PLACE OPTIONS [OPTIONAL...] -
 * FSTYPE SOURCE SUPEROPTIONS" a line.  Returns how many, at most max.
 */
static int parse_mounts(char *text, cg_mount_t *m, int max)
{
    int n = 0;
    for (char *line = text, *next; line != NULL && *line && n < max; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = 0;
        char *f[6] = { 0 }, *save = NULL, *tok = strtok_r(line, " ", &save);
        int k = 0;
        for (; tok != NULL && k < 6; tok = strtok_r(NULL, " ", &save))
            f[k++] = tok;
        while (tok != NULL && strcmp(tok, "-") != 0) /* the optional fields */
            tok = strtok_r(NULL, " ", &save);
        char *fstype = tok != NULL ? strtok_r(NULL, " ", &save) : NULL;
        char *source = fstype != NULL ? strtok_r(NULL, " ", &save) : NULL;
        char *super = source != NULL ? strtok_r(NULL, " ", &save) : NULL;
        if (k < 6 || super == NULL)
            continue;
        int v2 = strcmp(fstype, "cgroup2") == 0;
        if (!v2 && !(strcmp(fstype, "cgroup") == 0 && has_cpu(super, strlen(super))))
            continue;
        unescape(f[3]);
        unescape(f[4]);
        if (f[3][0] != '/' || snprintf(m[n].root, sizeof m[n].root, "%s", f[3]) >= (int)sizeof m[n].root ||
            snprintf(m[n].at, sizeof m[n].at, "%s", f[4]) >= (int)sizeof m[n].at)
            continue;
        m[n].v2 = v2;
        n++;
    }
    return n;
}

/* path (from /proc/self/cgroup) below a mount's root: the rest, or NULL
   when it is not under that root or climbs out of it with "..". */
static const char *below(const char *path, const char *root)
{
    if (path[0] != '/')
        return NULL;
    for (const char *d = strstr(path, "/.."); d != NULL; d = strstr(d + 1, "/.."))
        if (d[3] == '/' || d[3] == 0)
            return NULL;
    size_t len = strlen(root);
    while (len > 0 && root[len - 1] == '/')
        len--;
    if (strncmp(path, root, len) != 0 || (path[len] != '/' && path[len] != 0))
        return NULL;
    return path[len] ? path + len : "/";
}

int cpus_usable_at(const char *proc_cgroup, const char *mountinfo, int n_affinity, char *why, size_t whylen)
{
    char dummy[1];
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    int n = n_affinity > 0 ? n_affinity : 1;
    snprintf(why, whylen, "the %d CPU%s of its affinity mask", n, n == 1 ? "" : "s");
    char *text = malloc(CG_FILE_MAX);
    cg_mount_t *mounts = malloc(CG_MOUNTS_MAX * sizeof *mounts);
    int n_mounts = 0;
    if (text != NULL && mounts != NULL && read_small(mountinfo, text, CG_FILE_MAX) >= 0)
        n_mounts = parse_mounts(text, mounts, CG_MOUNTS_MAX);
    if (n_mounts == 0 || read_small(proc_cgroup, text, CG_FILE_MAX) < 0) {
        free(mounts);
        free(text);
        return n;
    }
    int best = 0;
    char where[CG_PATH_MAX + 32] = "";
    for (char *line = text, *next; line != NULL && *line; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        size_t clen = (size_t)(c2 - ctrls);
        int v2 = clen == 0 && c1 - line == 1 && line[0] == '0';
        if (!v2 && !has_cpu(ctrls, clen))
            continue;
        for (int k = 0; k < n_mounts; k++) {
            const char *rel = mounts[k].v2 == v2 ? below(path, mounts[k].root) : NULL;
            char w[CG_PATH_MAX];
            int q = rel != NULL ? quota_walk(mounts[k].at, rel, v2, w, sizeof w) : 0;
            if (q > 0 && (best == 0 || q < best)) {
                best = q;
                snprintf(where, sizeof where, "%s/%s", w, v2 ? "cpu.max" : "cpu.cfs_quota_us");
            }
        }
    }
    free(mounts);
    free(text);
    if (best > 0 && best < n) {
        snprintf(why, whylen, "the CPU quota of its cgroup (%s): %d CPU%s", where, best, best == 1 ? "" : "s");
        n = best;
    }
    return n;
}

int cpus_usable(char *why, size_t whylen)
{
    return cpus_usable_at("/proc/self/cgroup", "/proc/self/mountinfo", affinity_count(), why, whylen);
}
