// SPDX-License-Identifier: GPL-2.0
/*
 * The idle hook of a warped VM: a cpuidle driver whose one state tells the host, with
 * the BLOCK hypercall, that this CPU is idle until the event our clock-event device has
 * programmed, then halts as the default idle routine does.
 *
 * Registered only when the host runs the VM with --warp-idle (tickless_boot->warp) and
 * the tick runs on our clock-event device: otherwise no cpuidle driver exists, and
 * cpuidle_idle_call() takes default_idle_call() exactly as in a kernel without one.
 *
 * Why it is race-free: the idle loop disables interrupts before cpuidle_idle_call(),
 * which stops the tick (NO_HZ programs the next timer through set_next_event) and calls
 * us with interrupts still disabled. BLOCK(0) therefore names the event that stays
 * programmed until we halt: no interrupt handler can run and re-arm it in between. An
 * interrupt the host injects during the call (the warp makes the event due at once)
 * stays pending in the local APIC; default_idle() is "sti; hlt" (raw_safe_halt(), the
 * halt x86's idle routine does without cpuidle) then cli, and sti's one
 * instruction shadow lets hlt start before the pending interrupt is taken, which then
 * ends the hlt at once. -ETIME (the event is already due) skips the halt: we return
 * with interrupts disabled, cpuidle_enter_state() enables them, the interrupt comes, and
 * the idle loop runs again. Any other answer (-EINVAL: nothing programmed, the tick is
 * stopped with no timer at all) halts as before: only an interrupt can wake us then.
 *
 * One state and no polling: cpuidle_idle_call() skips the governor for a single state
 * and keeps the tick decision it makes without a driver, so the extra ring-0 work per
 * idle is cpuidle_enter_state()'s bookkeeping and the hypercall.
 */
#define pr_fmt(fmt) "tickless: " fmt

#include <linux/cpuidle.h>
#include <linux/init.h>
#include <linux/irqflags.h>
#include <linux/printk.h>
#include <asm/processor.h>

#include "tickless.h"

/* cpuidle_enter_state() has stopped RCU watching: noinstr code only (__cpuidle). */
static __cpuidle int tickless_idle_enter(struct cpuidle_device *dev,
					 struct cpuidle_driver *drv, int index)
{
	long ret;

	tickless_count(blocks);
	ret = tickless_hypercall(TICKLESS_HYPERCALL_BLOCK, 0, 0);
	if (ret == -ETIME)
		return index; /* already due: the interrupt comes once they are enabled */
	default_idle(); /* sti; hlt, then cli: as cpuidle_enter_state() called us */
	return index;
}

static struct cpuidle_driver tickless_idle_driver = {
	.name = "tickless",
	.states = {
		{
			.enter = tickless_idle_enter,
			.exit_latency = 1,
			.target_residency = 1,
			.name = "BLOCK",
			.desc = "BLOCK(0) hypercall, then hlt",
		},
	},
	.state_count = 1,
};

/* After the governors (postcore) and our clock-event device (core_initcall). */
static int __init tickless_idle_init(void)
{
	int ret;

	if (!tickless_boot || !READ_ONCE(tickless_boot->warp))
		return 0; /* no warp: Linux's own idle, no exit more per idle */
	if (!tickless_clockevent_registered) {
		pr_warn("--warp-idle without the tickless clock-event device: idle as usual\n");
		return 0;
	}
	ret = cpuidle_register(&tickless_idle_driver, NULL);
	if (ret) {
		pr_err("cannot register the cpuidle driver: %d\n", ret);
		return ret;
	}
	pr_info("warp: idle through BLOCK (cpuidle driver tickless)\n");
	return 0;
}
device_initcall(tickless_idle_init);
