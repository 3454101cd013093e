/*
 * cpus.c - how many CPUs this process may use (cpus.h).
 *
 * /proc/self/cgroup names the process's cgroup in each hierarchy, one
 * line "ID:CONTROLLERS:PATH": ID 0 with no controllers is cgroup v2,
 * whose quota is PATH/cpu.max ("max PERIOD" or "QUOTA PERIOD", in
 * microseconds); a v1 line whose controllers include `cpu` has its quota
 * in PATH/cpu.cfs_quota_us (-1: none) over PATH/cpu.cfs_period_us, under
 * that hierarchy's mount (/sys/fs/cgroup/cpu,cpuacct or .../cpu).  A
 * quota on any ancestor binds too, so the walk goes up PATH to the
 * mount's root; inside a container PATH may be the host's, absent from
 * the container's mount, and the walk's last stop (the root, which is
 * then the container's own cgroup) is the one that answers.
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
#define CG_FILE_MAX 65536 /* /proc/self/cgroup is a line per hierarchy */

/* The CPUs in the affinity mask; the online count where it cannot be read. */
static int affinity_count(void)
{
    for (int n = 1024; n <= (1 << 20); n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (set == NULL)
            break;
        size_t sz = CPU_ALLOC_SIZE(n);
        if (sched_getaffinity(0, sz, set) == 0) {
            int c = CPU_COUNT_S(sz, set);
            CPU_FREE(set);
            return c > 0 ? c : 1;
        }
        CPU_FREE(set);
        if (errno != EINVAL) /* EINVAL: the kernel's mask is wider */
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
 * The smallest quota on cgroup `path` (from /proc/self/cgroup) and its
 * ancestors under the mount `mount`; 0 for none.  *where gets the folder
 * that set it.
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

/* Whether the comma list ctrls has the item "cpu". */
static int has_cpu(const char *ctrls, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && ctrls[j] != ',')
            j++;
        if (j - i == 3 && memcmp(ctrls + i, "cpu", 3) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

int cpus_usable_at(const char *proc_cgroup, const char *cgroup_root, int n_affinity, char *why, size_t whylen)
{
    char dummy[1];
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    int n = n_affinity > 0 ? n_affinity : 1;
    snprintf(why, whylen, "the %d CPU%s of its affinity mask", n, n == 1 ? "" : "s");
    char *text = malloc(CG_FILE_MAX);
    if (text == NULL || read_small(proc_cgroup, text, CG_FILE_MAX) < 0) {
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
        char mount[CG_PATH_MAX], w[CG_PATH_MAX], lwhere[CG_PATH_MAX + 32] = "";
        int q = 0;
        if (clen == 0 && c1 - line == 1 && line[0] == '0') { /* v2: the unified mount, or a hybrid's */
            static const char *const sub[] = { "", "/unified" };
            for (size_t k = 0; k < 2; k++) {
                if (snprintf(mount, sizeof mount, "%s%s", cgroup_root, sub[k]) >= (int)sizeof mount)
                    continue;
                int qk = quota_walk(mount, path, 1, w, sizeof w);
                if (qk > 0 && (q == 0 || qk < q)) {
                    q = qk;
                    snprintf(lwhere, sizeof lwhere, "%s/cpu.max", w);
                }
            }
        } else if (has_cpu(ctrls, clen)) { /* v1: mounted under its controller list, or as "cpu" */
            for (int k = 0; k < 2; k++) {
                if ((k == 0 ? snprintf(mount, sizeof mount, "%s/%.*s", cgroup_root, (int)clen, ctrls)
                            : snprintf(mount, sizeof mount, "%s/cpu", cgroup_root)) >= (int)sizeof mount)
                    continue;
                int qk = quota_walk(mount, path, 0, w, sizeof w);
                if (qk > 0 && (q == 0 || qk < q)) {
                    q = qk;
                    snprintf(lwhere, sizeof lwhere, "%s/cpu.cfs_quota_us", w);
                }
                if (k == 0 && clen == 3) /* the list is "cpu": the same mount */
                    break;
            }
        }
        if (q > 0 && (best == 0 || q < best)) {
            best = q;
            memcpy(where, lwhere, sizeof where);
        }
    }
    free(text);
    if (best > 0 && best < n) {
        snprintf(why, whylen, "the CPU quota of its cgroup (%s), rounded up to %d CPU%s", where, best,
                 best == 1 ? "" : "s");
        n = best;
    }
    return n;
}

int cpus_usable(char *why, size_t whylen)
{
    return cpus_usable_at("/proc/self/cgroup", "/sys/fs/cgroup", affinity_count(), why, whylen);
}
