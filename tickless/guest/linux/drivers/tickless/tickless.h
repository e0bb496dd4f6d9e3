/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tickless guest drivers: the host's window (tickless_abi.h, generated from
 * tickless/guest/abi.py, lays it out) and the hypercall that reaches the host.
 */
#ifndef _TICKLESS_H
#define _TICKLESS_H

#include <linux/compiler.h>
#include <linux/types.h>
#include <asm/pvclock-abi.h>

#include "tickless_abi.h"

extern struct tickless_boot *tickless_boot;
extern struct pvclock_vcpu_time_info *tickless_pvclock;
extern struct tickless_shared *tickless_shared;
extern struct tickless_linux_info *tickless_info;
extern u64 *tickless_results;

/* The PV clock in ns: the clock the host timestamps and arms its timers with. */
u64 tickless_clock_ns(void);
/* The name of the clocksource timekeeping runs on. */
const char *tickless_current_clocksource(void);
/* Registers the clock-event device after its min-delta self-test; 0 or -errno. */
int tickless_clockevent_init(void);

/*
 * As the small guest does it: the call number in eax to HYPERCALL_PORT, arguments in
 * rdi and rsi, 0 or a negative errno back in rax.
 */
static inline long tickless_hypercall(unsigned long nr, unsigned long a0, unsigned long a1)
{
	unsigned long rax = nr;

	asm volatile("outl %%eax, %%dx"
		     : "+a"(rax)
		     : "d"((u16)TICKLESS_HYPERCALL_PORT), "D"(a0), "S"(a1)
		     : "memory");
	return (long)rax;
}

/* Counters the host reads while the guest runs: single CPU, so a plain increment. */
#define tickless_count(field) WRITE_ONCE(tickless_shared->field, tickless_shared->field + 1)

#endif
