/*
 * cpus.h - how many CPUs this process may use: the CPU backend's default
 * thread count (threads = 0).
 *
 * The count of online cores is the wrong default wherever the process is
 * given less than the machine: a CPU affinity mask (taskset, systemd's
 * CPUAffinity=, a container's cpuset) or a cgroup CPU quota (systemd's
 * CPUQuota=, docker --cpus, a Kubernetes CPU limit).  Under a quota,
 * more threads than the quota's CPUs spend it sooner and then all wait
 * out the rest of the period together; a pool step that waits on its
 * slowest thread waits on that (two threads in a one-CPU quota on a
 * two-core machine: 0.53x the tokens/s of one at batch-1 decode,
 * 0.81-0.93x at prefill and batch 16; docs/PERFORMANCE.md).
 */
#ifndef LLAMAD_CPU_CPUS_H
#define LLAMAD_CPU_CPUS_H

#include <stddef.h>

/*
 * The CPUs in this process's affinity mask, lowered to the smallest CPU
 * quota of its cgroup or any ancestor (cgroup v2 cpu.max, v1
 * cpu.cfs_quota_us over cpu.cfs_period_us), each quota rounded up to
 * whole CPUs; at least 1.  why (may be NULL) gets a short phrase naming
 * what set the count, for the log.  Reads /proc/self/cgroup,
 * /proc/self/mountinfo and the cgroup files they lead to; files it cannot
 * read or parse are passed over.
 */
int cpus_usable(char *why, size_t whylen);

/*
 * The same with the files given (tests): proc_cgroup stands for
 * /proc/self/cgroup, mountinfo for /proc/self/mountinfo, and n_affinity
 * (> 0) for the size of the affinity mask.
 */
int cpus_usable_at(const char *proc_cgroup, const char *mountinfo, int n_affinity, char *why, size_t whylen);

#endif
