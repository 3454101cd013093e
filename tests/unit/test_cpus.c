/*
 * test_cpus.c - the CPU backend's default thread count (cpus.h): the
 * affinity mask lowered to the smallest cgroup CPU quota on the path up,
 * for cgroup v2 (unified and hybrid), v1 (under its controller list or
 * "cpu", and the container case whose path is the host's), with files
 * that are absent or malformed passed over; and the real call against
 * an affinity mask of one CPU.
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

/* A fresh folder for a case's fake /sys/fs/cgroup and /proc/self/cgroup. */
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

/* cpus_usable_at over root/proc (the cgroup lines) and root/sys. */
static int usable(int n_affinity, char *why, size_t whylen)
{
    char proc[128], sys[128];
    snprintf(proc, sizeof proc, "%s/proc", root);
    snprintf(sys, sizeof sys, "%s/sys", root);
    return cpus_usable_at(proc, sys, n_affinity, why, whylen);
}

TEST(v2_smallest_quota_on_the_path_up)
{
    char why[512];
    fresh();
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

TEST(v2_hybrid_and_a_container_root)
{
    char why[512];
    fresh();
    put("proc", "1:name=systemd:/x\n0::/\n"); /* a container's own namespace: its cgroup is the root */
    put("sys/unified/cpu.max", "250000 100000\n");
    ASSERT_EQ_INT(usable(16, why, sizeof why), 3);
    ASSERT_MSG(strstr(why, "unified/cpu.max") != NULL && strstr(why, "3 CPUs") != NULL, "%s", why);
    cleanup();
}

TEST(v1_under_its_controllers_or_cpu)
{
    char why[512];
    fresh();
    put("proc", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n2:cpuset:/docker/abc\n");
    put_v1("sys/cpu,cpuacct/docker/abc", "-1\n", "100000\n");
    put_v1("sys/cpu,cpuacct/docker", "300000\n", "100000\n");
    put_v1("sys/cpuset/docker/abc", "100000\n", "100000\n"); /* not the cpu controller's folder */
    ASSERT_EQ_INT(usable(8, why, sizeof why), 3);
    ASSERT_MSG(strstr(why, "cpu,cpuacct/docker/cpu.cfs_quota_us") != NULL, "%s", why);
    cleanup();

    /* the host's path, absent from the container's mount (named "cpu"):
       the mount's root answers */
    fresh();
    put("proc", "3:cpuacct,cpu:/kubepods/pod1/c1\n");
    put_v1("sys/cpu", "50000\n", "100000\n");
    ASSERT_EQ_INT(usable(4, why, sizeof why), 1);
    ASSERT_MSG(strstr(why, "1 CPU") != NULL, "%s", why);
    cleanup();
}

TEST(what_cannot_be_read_is_passed_over)
{
    char why[512];
    fresh();
    ASSERT_EQ_INT(usable(6, why, sizeof why), 6); /* no cgroup file at all */
    ASSERT_MSG(strstr(why, "6 CPUs of its affinity mask") != NULL, "%s", why);
    put("proc", "garbage\n::\n0::relative\n0::/a\n7:cpu:\n");
    put("sys/a/cpu.max", "lots 100000\n");
    put("sys/cpu.max", "100000 0\n");
    put_v1("sys/cpu", "99999999999999999999999\n", "100000\n");
    ASSERT_EQ_INT(usable(6, why, sizeof why), 6);
    ASSERT_EQ_INT(usable(6, NULL, 0), 6);
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
    ASSERT_MSG(strstr(why, "1 CPU") != NULL, "%s", why);
}

TEST_LIST(T(v2_smallest_quota_on_the_path_up), T(v2_hybrid_and_a_container_root), T(v1_under_its_controllers_or_cpu),
          T(what_cannot_be_read_is_passed_over), T(the_real_call_sees_the_affinity_mask))
