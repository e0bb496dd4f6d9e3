// SPDX-License-Identifier: GPL-2.0
/*
 * The host's window and the "tickless" clocksource.
 *
 * The host reserves a window at the top of RAM (e820 reserved) and names it with
 * tickless.window=<gpa>. It holds what the host asks for (struct tickless_boot), the PV
 * clock page, the counters both sides read, what this kernel chose, and the results.
 * The clocksource reads the same PV clock page the host keeps its timers on, so what
 * the host does to that clock (dilation) reaches Linux's timekeeping; it is rated above
 * kvm-clock (400) and tsc (300) so that timekeeping picks it. Without
 * CONFIG_TICKLESS_CLOCKS (the stock kernel) only the window is mapped: Linux keeps its
 * own clocks, and the workloads read the PV clock only to time-stamp for the host.
 */
#define pr_fmt(fmt) "tickless: " fmt

#include <linux/clocksource.h>
#include <linux/init.h>
#include <linux/io.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>
#include <linux/sched/clock.h>
#include <linux/timekeeping.h>
#include <asm/hpet.h>
#include <asm/paravirt.h>
#include <asm/pvclock.h>

#include "tickless.h"

static_assert(sizeof(struct pvclock_vcpu_time_info) == 32);

static unsigned long window_gpa;
module_param_named(window, window_gpa, ulong, 0444);
MODULE_PARM_DESC(window, "guest-physical address of the tickless host's window");

struct tickless_boot *tickless_boot;
struct pvclock_vcpu_time_info *tickless_pvclock;
struct tickless_shared *tickless_shared;
struct tickless_linux_info *tickless_info;
u64 *tickless_results;
void *tickless_msg_tx;
struct tickless_msg_ring *tickless_msg_ring;

u64 tickless_clock_ns(void)
{
	return tickless_read_pvclock(tickless_pvclock);
}

s64 tickless_sched_clock_offset __ro_after_init;

/*
 * sched_clock on the PV clock too. kvm-clock's sched_clock reads the host's time, which
 * a dilated, warped or frozen guest clock leaves behind: the scheduler's clock (rq_clock)
 * would then disagree with the hrtimers', and code that converts between them does wrong.
 * The fair class's deadline server, for one, arms its replenishment hrtimer at "the
 * period's end on rq_clock" converted to hrtimer time: under warp each expiry comes a
 * second of guest time later but a few ms later on rq_clock, and re-arms for a period
 * that has hardly moved, one interrupt a warped second until rq_clock catches up.
 * Continuous at the switch (the offset keeps the value sched_clock had); noinstr as
 * every sched_clock.
 */
static noinstr u64 tickless_sched_clock_read(void)
{
	return tickless_read_pvclock(tickless_pvclock) - tickless_sched_clock_offset;
}

/* Stock: Linux's own sched_clock stays; the offset then only relates it to the PV clock. */
static void __init tickless_sched_clock_init(void)
{
	unsigned long flags;

	local_irq_save(flags);
	tickless_sched_clock_offset = (s64)(tickless_clock_ns() - sched_clock());
	if (IS_ENABLED(CONFIG_TICKLESS_CLOCKS))
		paravirt_set_sched_clock(tickless_sched_clock_read);
	local_irq_restore(flags);
	if (IS_ENABLED(CONFIG_TICKLESS_CLOCKS))
		pr_info("sched_clock on the PV clock (offset %lld ns)\n",
			tickless_sched_clock_offset);
}

/* Timekeeping calls enable/disable when it switches to/away from a clocksource. */
static bool cs_current;

#ifdef CONFIG_TICKLESS_CLOCKS
static u64 tickless_cs_read(struct clocksource *cs)
{
	return tickless_clock_ns();
}

static int tickless_cs_enable(struct clocksource *cs)
{
	cs_current = true;
	return 0;
}

static void tickless_cs_disable(struct clocksource *cs)
{
	cs_current = false;
}

static struct clocksource tickless_cs = {
	.name = "tickless",
	.rating = 450,
	.read = tickless_cs_read,
	.mask = CLOCKSOURCE_MASK(64),
	.flags = CLOCK_SOURCE_IS_CONTINUOUS,
	.enable = tickless_cs_enable,
	.disable = tickless_cs_disable,
};
#endif /* CONFIG_TICKLESS_CLOCKS */

/*
 * The HPET's clocksource has no id (CSID_GENERIC): timekeeping reads the HPET when the
 * counter value of a snapshot lies between two reads of the HPET's main counter around
 * it (32 bits, as its clocksource reads it). Another counter would have to fall in a
 * window of a few thousand ticks out of 2^32.
 */
static bool timekeeping_reads_hpet(void)
{
#ifdef CONFIG_HPET_TIMER
	struct system_time_snapshot snap;
	unsigned long flags;
	u32 before, after;

	if (!is_hpet_enabled())
		return false;
	local_irq_save(flags);
	before = hpet_readl(HPET_COUNTER);
	ktime_get_snapshot(&snap);
	after = hpet_readl(HPET_COUNTER);
	local_irq_restore(flags);
	return snap.cs_id == CSID_GENERIC && (u32)((u32)snap.cycles - before) <= after - before;
#else
	return false;
#endif
}

/* No interface names the current clocksource; ours knows, the others by their id. */
const char *tickless_current_clocksource(void)
{
	struct system_time_snapshot snap;

	if (cs_current)
		return "tickless";
	if (timekeeping_reads_hpet())
		return "hpet";
	ktime_get_snapshot(&snap);
	switch (snap.cs_id) {
	case CSID_X86_KVM_CLK:
		return "kvm-clock";
	case CSID_X86_TSC:
		return "tsc";
	case CSID_X86_TSC_EARLY:
		return "tsc-early";
	default:
		return "other";
	}
}

static int __init tickless_init(void)
{
	void *window;
	u64 version;

	if (!window_gpa)
		return 0; /* not a tickless guest */
	window = memremap(window_gpa, TICKLESS_LINUX_WINDOW_BYTES, MEMREMAP_WB);
	if (!window) {
		pr_err("cannot map the window at %#lx\n", window_gpa);
		return -ENOMEM;
	}
	tickless_boot = window + TICKLESS_WINDOW_BOOT_OFFSET;
	version = tickless_boot->abi_version;
	if (tickless_boot->magic != TICKLESS_BOOT_MAGIC || version != TICKLESS_ABI_VERSION) {
		pr_err("window at %#lx: bad magic or ABI version %llu (want %d)\n", window_gpa,
		       version, TICKLESS_ABI_VERSION);
		tickless_hypercall(TICKLESS_HYPERCALL_PANIC, TICKLESS_PANIC_BAD_ABI, version);
		tickless_boot = NULL;
		return -EINVAL;
	}
	tickless_pvclock = window + TICKLESS_WINDOW_PVCLOCK_OFFSET;
	tickless_shared = window + TICKLESS_WINDOW_SHARED_OFFSET;
	tickless_info = window + TICKLESS_WINDOW_INFO_OFFSET;
	tickless_results = window + TICKLESS_WINDOW_RESULTS_OFFSET;
	tickless_msg_tx = window + TICKLESS_WINDOW_MSG_TX_OFFSET;
	tickless_msg_ring = window + TICKLESS_WINDOW_MSG_RING_OFFSET;
	pr_info("window at %#lx, ABI %llu\n", window_gpa, version);

	if (!READ_ONCE(tickless_pvclock->tsc_to_system_mul)) {
		pr_err("the PV clock page is empty: no clocksource, no clock-event device\n");
		return -ENODEV;
	}
#ifdef CONFIG_TICKLESS_CLOCKS
	clocksource_register_hz(&tickless_cs, NSEC_PER_SEC);
	tickless_sched_clock_init();
	if (tickless_boot->timer != TICKLESS_TIMERPATH_LGUEST &&
	    tickless_boot->timer != TICKLESS_TIMERPATH_PV)
		return 0; /* lapic, hpet, pit: Linux's own driver is the clock-event device */
	return tickless_clockevent_init();
#else
	tickless_sched_clock_init();
	pr_info("stock: Linux keeps its own clocksource, sched_clock and clock-event device\n");
	return 0;
#endif
}
/* Early: timekeeping chooses among clocksources at fs_initcall. */
core_initcall(tickless_init);
