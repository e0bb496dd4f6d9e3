// SPDX-License-Identifier: GPL-2.0
/*
 * The workloads, built in because user space cannot run on these hosts. They run from
 * the last initcall and never return (after them the kernel would look for init):
 * first what the kernel chose goes to the host (struct tickless_linux_info), then
 *
 * MEASURE: the paper's method, an hrtimer re-armed interval_ns after each event's own
 *   ktime_get(), count events; each event's PV clock time goes to results[i], the
 *   reference to results[0]; then DONE(events).
 * Both sample every clock the kernel has (clocks.c) at their start and end, and IDLE every
 * clock_sample_ns too, when the host asks (Boot.clock_sample_ns: the stock kernel).
 *
 * IDLE: two housekeeping hrtimers (periods housekeeping_a_ns and _b_ns) while the
 *   workload sleeps, so the CPU idles and NO_HZ stops the tick; after duration_ns,
 *   DONE(0). Its start on the PV clock goes to results[0] (under --warp-idle the host
 *   counts guest time from there: the guest idles, and warps, before the host sees it
 *   ready), and each housekeeping run counts timer_callbacks.
 */
#define pr_fmt(fmt) "tickless: " fmt

#include <linux/completion.h>
#include <linux/hrtimer.h>
#include <linux/init.h>
#include <linux/minmax.h>
#include <linux/printk.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/utsname.h>
#include <linux/wait.h>

#include "../../kernel/time/tick-internal.h"
#include "tickless.h"

static DECLARE_COMPLETION(measure_done);
static struct hrtimer measure_timer;
static u64 measure_interval, measure_count, measure_seen;
static ktime_t measure_start;
static bool measure_absolute;

static enum hrtimer_restart measure_event(struct hrtimer *timer)
{
	/* The timestamp first: the next deadline, from ktime_get() after it, is then never
	 * before this event's time plus the interval on the host's clock. */
	u64 stamp = tickless_clock_ns();
	ktime_t now = ktime_get();

	measure_seen++;
	WRITE_ONCE(tickless_results[measure_seen], stamp);
	WRITE_ONCE(tickless_shared->events_recorded, measure_seen);
	if (measure_seen >= measure_count) {
		complete(&measure_done);
		return HRTIMER_NORESTART;
	}
	if (measure_absolute) /* cyclictest's grid */
		now = ktime_add_ns(measure_start, measure_seen * measure_interval);
	hrtimer_set_expires(timer, ktime_add_ns(now, measure_interval));
	return HRTIMER_RESTART;
}

static u64 measure(const char *clockevent)
{
	struct tickless_boot *boot = tickless_boot;
	u64 room = min_t(u64, boot->results_capacity, TICKLESS_LINUX_MAX_EVENTS + 1);

	measure_interval = boot->interval_ns;
	measure_count = min_t(u64, boot->count, room ? room - 1 : 0);
	measure_absolute = boot->method == TICKLESS_METHOD_ABSOLUTE;
	if (!measure_interval || !measure_count) {
		pr_err("measure: nothing to do (interval %llu ns, %llu events)\n",
		       measure_interval, measure_count);
		return 0;
	}
	pr_info("measure %llu x %llu ns on clockevent %s\n", measure_count, measure_interval,
		clockevent);
	if (boot->clock_sample_ns)
		tickless_clocks_sample();
	hrtimer_init(&measure_timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS);
	measure_timer.function = measure_event;
	WRITE_ONCE(tickless_results[0], tickless_clock_ns());
	measure_start = ktime_get();
	hrtimer_start(&measure_timer, ktime_add_ns(measure_start, measure_interval),
		      HRTIMER_MODE_ABS);
	wait_for_completion_state(&measure_done, TASK_IDLE);
	if (boot->clock_sample_ns)
		tickless_clocks_sample();
	return measure_seen;
}

static struct hrtimer housekeeping_a, housekeeping_b;
static u64 period_a, period_b;

/* A housekeeping timer does its work in the interrupt. Waking a thread instead would
 * cost two more interrupts a second: the tick while it runs, and the replenishment
 * timer of the fair-class deadline server its wake-up arms. */
static enum hrtimer_restart housekeeping(struct hrtimer *timer)
{
	u64 period = timer == &housekeeping_a ? period_a : period_b;

	tickless_count(timer_callbacks);
	hrtimer_forward_now(timer, ns_to_ktime(period));
	return HRTIMER_RESTART;
}

static void housekeeping_start(struct hrtimer *timer, u64 period)
{
	hrtimer_init(timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	timer->function = housekeeping;
	if (period)
		hrtimer_start(timer, ns_to_ktime(period), HRTIMER_MODE_REL);
}

static void idle(const char *clockevent)
{
	struct tickless_boot *boot = tickless_boot;
	ktime_t end;

	WRITE_ONCE(tickless_results[0], tickless_clock_ns());
	end = ktime_add_ns(ktime_get(), boot->duration_ns);
	pr_info("idle %llu ns, housekeeping every %llu and %llu ns, on clockevent %s\n",
		boot->duration_ns, boot->housekeeping_a_ns, boot->housekeeping_b_ns, clockevent);
	period_a = boot->housekeeping_a_ns;
	period_b = boot->housekeeping_b_ns;
	housekeeping_start(&housekeeping_a, period_a);
	housekeeping_start(&housekeeping_b, period_b);
	if (boot->clock_sample_ns)
		tickless_clocks_sample();
	do { /* one sleep to the end (or the next sample): NO_HZ stops the tick */
		ktime_t until = end;

		if (boot->clock_sample_ns)
			until = min_t(ktime_t, end, ktime_add_ns(ktime_get(), boot->clock_sample_ns));
		set_current_state(TASK_IDLE);
		schedule_hrtimeout(&until, HRTIMER_MODE_ABS);
		if (boot->clock_sample_ns && ktime_before(ktime_get(), end))
			tickless_clocks_sample();
	} while (ktime_before(ktime_get(), end));
	hrtimer_cancel(&housekeeping_a);
	hrtimer_cancel(&housekeeping_b);
}

#define MSG_PING 1 /* the small guest's payload: {kind, seq, try} (pingpong.c) */
#define MSG_PONG 2

static void pingpong(void)
{
	u64 msg[3], src;
	long len, ret;

	if (!tickless_msg_on) {
		pr_err("pingpong: no message device (no network address)\n");
		return;
	}
	WRITE_ONCE(tickless_results[0], tickless_clock_ns());
	pr_info("pingpong: answering pings at address %llu\n",
		READ_ONCE(tickless_boot->msg_address));
	for (;;) {
		wait_event_idle(tickless_msg_wq, tickless_msg_pending());
		while ((len = tickless_msg_recv(&src, msg, sizeof(msg))) >= 0) {
			if (len != sizeof(msg) || msg[0] != MSG_PING)
				continue; /* not ours to answer */
			msg[0] = MSG_PONG;
			ret = tickless_msg_send(src, msg, sizeof(msg));
			if (ret)
				pr_warn_ratelimited("pingpong: pong to %llu refused: %ld\n", src, ret);
		}
	}
}

/*
 * The wall time Linux's clock gives the guest's start. Linux set its wall clock once, at
 * timekeeping_init, from x86_platform.get_wallclock (the CMOS RTC; kvm-clock's wall clock
 * where kvm-clock runs), and set CLOCK_MONOTONIC to sched_clock then; the two have run
 * together since, so real - boottime is that reading minus sched_clock at the read:
 * Linux's boot time (/proc/stat's btime). sched_clock only started counting when the TSC
 * was set up, so btime is late by the guest time before that; moved back by it (the PV
 * clock minus sched_clock, which the switch of sched_clock to the PV clock kept), it is the
 * RTC's reading minus the guest time at the read: the RTC's epoch, less the fraction of a
 * second the RTC does not show. Not the wall clock now minus the PV clock: timekeeping
 * stood still from timekeeping_init to the first clocksource (jiffies, no tick yet).
 */
static u64 realtime_at_boot_ns(void)
{
	unsigned long flags;
	u64 real, boottime;

	local_irq_save(flags);
	real = ktime_get_real_ns();
	boottime = ktime_get_boottime_ns();
	local_irq_restore(flags);
	pr_info("wall clock %llu ns, boot time (btime) %llu ns, sched_clock started %lld ns "
		"into the guest's time\n", real, real - boottime, tickless_sched_clock_offset);
	return real - boottime - tickless_sched_clock_offset;
}

/* What the kernel chose, for the record; the host reads it once written is 1. */
static const char *publish_choices(void)
{
	struct clock_event_device *evt = tick_get_device(0)->evtdev;
	const char *clockevent = evt ? evt->name : "none";
	struct tickless_linux_info *info = tickless_info;

	strscpy((char *)info->clockevent, clockevent, sizeof(info->clockevent));
	strscpy((char *)info->clocksource, tickless_current_clocksource(),
		sizeof(info->clocksource));
	strscpy((char *)info->release, init_utsname()->release, sizeof(info->release));
	info->hz = HZ;
	info->realtime_at_boot_ns = realtime_at_boot_ns();
	virt_wmb(); /* the fields before the flag */
	WRITE_ONCE(info->written, 1);
	pr_info("Linux %s, HZ=%d, clockevent %s (%s), clocksource %s, started at %llu ns wall\n",
		(char *)info->release, HZ, clockevent,
		tick_get_device(0)->mode == TICKDEV_MODE_ONESHOT ? "oneshot" : "periodic",
		(char *)info->clocksource, info->realtime_at_boot_ns);
	return clockevent;
}

static int __init tickless_workload(void)
{
	const char *clockevent;
	u64 events = 0;

	if (!tickless_boot)
		return 0; /* no host window: an ordinary kernel */
	clockevent = publish_choices();
	WRITE_ONCE(tickless_shared->ready, 1);
	switch (tickless_boot->scenario) {
	case TICKLESS_SCENARIO_MEASURE:
		events = measure(clockevent);
		break;
	case TICKLESS_SCENARIO_IDLE:
		idle(clockevent);
		break;
	case TICKLESS_SCENARIO_PINGPONG:
		pingpong();
		break;
	default:
		pr_err("scenario %llu is not one for Linux\n", tickless_boot->scenario);
		break;
	}
	pr_info("done: %llu events, %llu timer interrupts, %llu -ETIME\n", events,
		READ_ONCE(tickless_shared->irq_count), READ_ONCE(tickless_shared->ce_etime));
	tickless_hypercall(TICKLESS_HYPERCALL_DONE, events, 0);
	for (;;) { /* the host stops us; until then, sleep */
		set_current_state(TASK_IDLE);
		schedule();
	}
	return 0;
}
/* The last initcall level: every clocksource and clock-event device is in place. */
late_initcall_sync(tickless_workload);
