/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tickless guest drivers: the host's window (tickless_abi.h, generated from
 * tickless/guest/abi.py, lays it out) and the hypercall that reaches the host.
 */
#ifndef _TICKLESS_H
#define _TICKLESS_H

#include <linux/compiler.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <asm/pvclock.h>
#include <asm/pvclock-abi.h>

#include "tickless_abi.h"

extern struct tickless_boot *tickless_boot;
extern struct pvclock_vcpu_time_info *tickless_pvclock;
extern struct tickless_shared *tickless_shared;
extern struct tickless_linux_info *tickless_info;
extern u64 *tickless_results;
/* The message device's send buffer and receive ring (message.c), in the same window. */
extern void *tickless_msg_tx;
extern struct tickless_msg_ring *tickless_msg_ring;

/*
 * The PV clock in ns: the clock the host timestamps and arms its timers with. Our own
 * read of the page: pvclock_clocksource_read() keeps a monotonic floor shared with
 * kvm-clock, which would tie the two clocks together. Always inlined: sched_clock reads
 * it where only noinstr code may run.
 */
static __always_inline u64 tickless_read_pvclock(const struct pvclock_vcpu_time_info *src)
{
	unsigned int version;
	u64 ns;

	do {
		version = pvclock_read_begin(src);
		ns = __pvclock_read_cycles(src, rdtsc_ordered());
	} while (pvclock_read_retry(src, version));
	return ns;
}
u64 tickless_clock_ns(void);
/* The PV clock minus the TSC's sched_clock when sched_clock moved to the PV clock. */
extern s64 tickless_sched_clock_offset;
/* The name of the clocksource timekeeping runs on. */
const char *tickless_current_clocksource(void);
/* Every clock the kernel has, read for the host into tickless_info (clocks.c); sleeps. */
void tickless_clocks_sample(void);
/* Registers the clock-event device after its min-delta self-test; 0 or -errno. */
int tickless_clockevent_init(void);
/* Whether it did: the tick runs on it, and BLOCK(0) names its programmed event. */
extern bool tickless_clockevent_registered;

/*
 * As the small guest does it: the call number in eax to HYPERCALL_PORT, arguments in
 * rdi and rsi, 0 or a negative errno back in rax. Always inlined: the idle hook calls it
 * where only noinstr code may run.
 */
static __always_inline long tickless_hypercall(unsigned long nr, unsigned long a0, unsigned long a1)
{
	unsigned long rax = nr;

	asm volatile("outl %%eax, %%dx"
		     : "+a"(rax)
		     : "d"((u16)TICKLESS_HYPERCALL_PORT), "D"(a0), "S"(a1)
		     : "memory");
	return (long)rax;
}

/*
 * Messages (message.c, tickless cosim): on when the host gave us a network address.
 * tickless_msg_recv takes the oldest message (its sender in *src, at most room bytes of
 * it into buf): its length, or -EAGAIN when the ring is empty. tickless_msg_send: 0, or
 * the host's -EINVAL (bad address or length) or -EAGAIN (its queue is full). The message
 * interrupt wakes tickless_msg_wq.
 */
extern bool tickless_msg_on;
extern struct wait_queue_head tickless_msg_wq;
bool tickless_msg_pending(void);
long tickless_msg_recv(u64 *src, void *buf, size_t room);
long tickless_msg_send(u64 dst, const void *buf, size_t len);

/* Counters the host reads while the guest runs: single CPU, so a plain increment. */
#define tickless_count(field) WRITE_ONCE(tickless_shared->field, tickless_shared->field + 1)

#endif
