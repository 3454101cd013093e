/*
 * test_cpus.c - the CPU backend's default thread count (cpus.h): the
 * affinity mask lowered to the smallest cgroup CPU quota on the path up,
 * for cgroup v2 (unified and hybrid) and v1 (the cpu controller's
 * hierarchy, not another's), with each mount's root taken off the path
 * (a container without a cgroup namespace) and paths outside it passed
 * over; files that are absent or malformed passed over; and the real
 * call against an affinity mask of one CPU.  Each case builds a fake
 * /proc/self/cgroup, /proc/self/mountinfo and cgroup tree in a fresh
 * folder.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity */
#endif
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu/cpus.h"
#include "test.h"

static char root[64];

static void fresh(void)
{
    snprintf(root, sizeof root, "/tmp/llamad-cpus-XXXXXX");
    ASSERT(mkdtemp(root) != NULL);
}

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ASSERT_EQ_INT(system(cmd), 0);
}

/* Write text to root/rel, making its folders. */
static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = 0;
        (void)mkdir(path, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    ASSERT_EQ_INT(fclose(f), 0);
}

/* A v1 quota: dir/cpu.cfs_quota_us and dir/cpu.cfs_period_us. */
static void put_v1(const char *dir, const char *quota, const char *period)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/cpu.cfs_quota_us", dir);
    put(rel, quota);
    snprintf(rel, sizeof rel, "%s/cpu.cfs_period_us", dir);
    put(rel, period);
}

/* root/mountinfo: one line per {cgroup root, place under root/, fstype, super options}. */
static void put_mounts(const char *const (*m)[4], int n)
{
    char text[4096];
    size_t at = 0;
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(text + at, sizeof text - at, "%d 31 0:%d %s %s/%s rw,relatime shared:9 - %s %s %s\n",
                               40 + i, 40 + i, m[i][0], root, m[i][1], m[i][2], m[i][2], m[i][3]);
    ASSERT(at < sizeof text);
    put("mountinfo", text);
}

/* cpus_usable_at over root/proc (the cgroup lines) and root/mountinfo. */
static int usable(int n_affinity, char *why, size_t whylen)
{
    char proc[128], mi[128];
    snprintf(proc, sizeof proc, "%s/proc", root);
    snprintf(mi, sizeof mi, "%s/mountinfo", root);
    return cpus_usable_at(proc, mi, n_affinity, why, whylen);
}

TEST(v2_smallest_quota_on_the_path_up)
{
    static const char *const m[][4] = { { "/", "sys", "cgroup2", "rw,nsdelegate" } };
    char why[512];
    fresh();
    put_mounts(m, 1);
    put("proc", "0::/a/b/c\n");
    put("sys/a/b/c/cpu.max", "max 100000\n");
    put("sys/a/b/cpu.max", "150000 100000\n"); /* 1.5 CPUs: 2 */
    put("sys/a/cpu.max", "400000 100000\n");
    ASSERT_EQ_INT(usable(8, why, sizeof why), 2);
    ASSERT_MSG(strstr(why, "/sys/a/b/cpu.max") != NULL && strstr(why, "2 CPUs") != NULL, "%s", why);
    put("sys/cpu.max", "50000 100000\n"); /* the root's half a CPU binds every cgroup below */
    ASSERT_EQ_INT(usable(8, why, sizeof why), 1);
    ASSERT_MSG(strstr(why, "/sys/cpu.max") != NULL, "%s", why);
    /* the affinity mask, where it is smaller, is the count */
    put("sys/cpu.max", "max 100000\n");
    ASSERT_EQ_INT(usable(1, why, sizeof why), 1);
    ASSERT_MSG(strstr(why, "affinity") != NULL, "%s", why);
    cleanup();
}

TEST(v2_hybrid_and_v1_beside_it)
{
    /* systemd's hybrid layout: v1 controllers, v2 at .../unified (a mount
       point with a space, escaped in mountinfo) */
    static const char *const m[][4] = { { "/", "sys/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct" },
                                        { "/", "sys/cpuset", "cgroup", "rw,cpuset" },
                                        { "/", "sys/uni\\040fied", "cgroup2", "rw" } };
    char why[512];
    fresh();
    put_mounts(m, 3);
    put("proc", "4:cpuset:/s\n3:cpu,cpuacct:/s\n1:name=systemd:/s\n0::/s\n");
    put("sys/uni fied/s/cpu.max", "250000 100000\n");
    ASSERT_EQ_INT(usable(16, why, sizeof why), 3);
    ASSERT_MSG(strstr(why, "uni fied/s/cpu.max") != NULL && strstr(why, "3 CPUs") != NULL, "%s", why);
    put_v1("sys/cpu,cpuacct/s", "200000\n", "100000\n");
    ASSERT_EQ_INT(usable(16, why, sizeof why), 2);
    ASSERT_MSG(strstr(why, "cpu,cpuacct/s/cpu.cfs_quota_us") != NULL, "%s", why);
    put_v1("sys/cpuset/s", "100000\n", "100000\n"); /* cpuset's hierarchy has no cpu controller */
    ASSERT_EQ_INT(usable(16, why, sizeof why), 2);
    cleanup();
}

TEST(v1_container_mount_roots_taken_off)
{
    /* Docker on v1 without a cgroup namespace: /proc/self/cgroup shows the
       host's path, the mount shows the subtree from /docker/abc */
    static const char *const m[][4] = { { "/docker/abc", "sys/cpu", "cgroup", "rw,cpuacct,cpu" } };
    char why[512];
    fresh();
    put_mounts(m, 1);
    put("proc", "3:cpuacct,cpu:/docker/abc/system.slice/x.service\n");
    put_v1("sys/cpu", "300000\n", "100000\n");
    put_v1("sys/cpu/system.slice/x.service", "-1\n", "100000\n");
    put_v1("sys/cpu/system.slice", "150000\n", "100000\n");
    ASSERT_EQ_INT(usable(8, why, sizeof why), 2);
    ASSERT_MSG(strstr(why, "sys/cpu/system.slice/cpu.cfs_quota_us") != NULL, "%s", why);
    /* a path that is not under the mount's root (another subtree; one
       that climbs out of a cgroup namespace) is not read there */
    put("proc", "3:cpuacct,cpu:/docker/other\n");
    ASSERT_EQ_INT(usable(8, why, sizeof why), 8);
    put("proc", "3:cpuacct,cpu:/docker/abcd\n");
    ASSERT_EQ_INT(usable(8, why, sizeof why), 8);
    put("proc", "3:cpuacct,cpu:/docker/abc/../abc/system.slice\n");
    ASSERT_EQ_INT(usable(8, why, sizeof why), 8);
    put("proc", "3:cpuacct,cpu:/docker/abc\n"); /* the mount's root itself */
    ASSERT_EQ_INT(usable(8, why, sizeof why), 3);
    cleanup();
}

TEST(what_cannot_be_read_is_passed_over)
{
    static const char *const m[][4] = { { "/", "sys", "cgroup2", "rw" }, { "/", "sys/cpu", "cgroup", "rw,cpu" } };
    char why[512];
    fresh();
    ASSERT_EQ_INT(usable(6, why, sizeof why), 6); /* neither file */
    ASSERT_MSG(strstr(why, "6 CPUs of its affinity mask") != NULL, "%s", why);
    put("proc", "0::/a\n");
    put("sys/a/cpu.max", "100000 100000\n");
    put("mountinfo", "garbage\n1 2 3\n40 31 0:1 / /x rw - cgroup2\n"); /* no cgroup mount parses */
    ASSERT_EQ_INT(usable(6, why, sizeof why), 6);
    put_mounts(m, 2);
    put("proc", "garbage\n::\n0::relative\n0::/a\n7:cpu:/\n");
    put("sys/a/cpu.max", "lots 100000\n");
    put("sys/cpu.max", "100000 0\n");
    /* out of range for a long long: not read as a quota (were it read, the
       count would be capped, and the mask's 6 would still win) */
    put_v1("sys/cpu", "99999999999999999999999\n", "100000\n");
    ASSERT_EQ_INT(usable(6, why, sizeof why), 6);
    ASSERT_EQ_INT(usable(6, NULL, 0), 6);
    put_v1("sys/cpu", "400000\n", "100000\n"); /* the "cpu" line, read */
    ASSERT_EQ_INT(usable(6, NULL, 0), 4);
    put("sys/a/cpu.max", "1 1000000\n"); /* a sliver of a CPU is one */
    ASSERT_EQ_INT(usable(6, NULL, 0), 1);
    cleanup();
}

TEST(the_real_call_sees_the_affinity_mask)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus_usable(NULL, 0);
    ASSERT(n >= 1 && n <= online);
    cpu_set_t all, one;
    ASSERT_EQ_INT(sched_getaffinity(0, sizeof all, &all), 0);
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, &all))
        first++;
    ASSERT(first < CPU_SETSIZE);
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ_INT(sched_setaffinity(0, sizeof one, &one), 0); /* this forked child's own mask */
    char why[512];
    ASSERT_EQ_INT(cpus_usable(why, sizeof why), 1);
    /* a quota of one CPU would not replace the mask's message (it is not smaller) */
    ASSERT_MSG(strstr(why, "1 CPU of its affinity mask") != NULL, "%s", why);
}

TEST_LIST(T(v2_smallest_quota_on_the_path_up), T(v2_hybrid_and_v1_beside_it), T(v1_container_mount_roots_taken_off),
          T(what_cannot_be_read_is_passed_over), T(the_real_call_sees_the_affinity_mask))
