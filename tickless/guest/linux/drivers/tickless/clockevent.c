// SPDX-License-Identifier: GPL-2.0
/*
 * The "tickless" clock-event device, after lguest's lguest_clockevent: set_next_event
 * is the SET_CLOCKEVENT hypercall, periodic mode is SET_PERIODIC, and the host raises
 * ISA IRQ LINUX_TIMER_IRQ (an IOAPIC pin of the MP table) when the event is due.
 *
 * On --timer pv the same device drives the PV deadline device instead (the small guest's
 * ABI, user.c pv_wait): set_next_event writes the absolute deadline on the PV clock into
 * the shared page and kicks the host (a 32-bit out to PV_KICK_PORT, an in-kernel
 * ioeventfd exit) only when it is earlier than the host's promise (pv_host_armed_ns);
 * every other re-arm is exitless. The host delivers at the deadline itself (its channel
 * is "deliver exact"), on the same IRQ; one-shot only (the tick core emulates periodic).
 *
 * A 1 GHz device (mult 1, shift 0: cycles are ns) whose limits are the ABI's, set
 * directly as lguest did: clockevents_config() would raise the minimum to 1 us.
 */
#define pr_fmt(fmt) "tickless: " fmt

#include <linux/clockchips.h>
#include <linux/completion.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irqdesc.h>
#include <linux/irqflags.h>
#include <linux/jiffies.h>
#include <linux/printk.h>
#include <linux/sched.h>

#include "../../kernel/time/tick-internal.h"
#include "tickless.h"

/* The PV device refuses nothing (a past deadline fires at once): the core's minimum is
 * only what is worth programming, as the LAPIC's. */
#define TICKLESS_PV_MIN_DELTA_NS 1000

static bool periodic_on;
bool tickless_clockevent_registered;

static bool pv_on; /* --timer pv: the PV deadline device */

/*
 * Dekker's order with the host loop: we write the deadline, fence, then read the promise;
 * it writes the promise, fences, then reads the deadline. One of the two sees the other.
 * A deadline already past is published as it is: the host fires it at once.
 */
static int tickless_pv_set_next_event(unsigned long delta, struct clock_event_device *evt)
{
	u64 deadline = tickless_clock_ns() + delta, promise;

	WRITE_ONCE(tickless_shared->pv_deadline_ns, deadline);
	mb();
	promise = READ_ONCE(tickless_shared->pv_host_armed_ns);
	if (!promise || deadline < promise) {
		tickless_count(pv_kicks);
		asm volatile("outl %%eax, %%dx"
			     :
			     : "a"(1u), "d"((u16)TICKLESS_PV_KICK_PORT)
			     : "memory");
	}
	return 0;
}

/* Nothing programmed: 0 in the page; a promise the host made is not kept for it. */
static int tickless_pv_shutdown(struct clock_event_device *evt)
{
	WRITE_ONCE(tickless_shared->pv_deadline_ns, 0);
	return 0;
}

static int tickless_set_next_event(unsigned long delta, struct clock_event_device *evt)
{
	long ret = tickless_hypercall(TICKLESS_HYPERCALL_SET_CLOCKEVENT, delta, 0);

	/* clockevents_program_min_delta() counts each retry before calling us. */
	WRITE_ONCE(tickless_shared->ce_min_delta_retries, evt->retries);
	if (ret == -ETIME)
		tickless_count(ce_etime); /* below the host's minimum: the core retries */
	return ret;
}

static int tickless_stop(void)
{
	unsigned long nr = periodic_on ? TICKLESS_HYPERCALL_SET_PERIODIC :
					 TICKLESS_HYPERCALL_SET_CLOCKEVENT;

	periodic_on = false;
	return tickless_hypercall(nr, 0, 0);
}

static int tickless_shutdown(struct clock_event_device *evt)
{
	return tickless_stop();
}

static int tickless_set_oneshot(struct clock_event_device *evt)
{
	return periodic_on ? tickless_stop() : 0;
}

static int tickless_set_periodic(struct clock_event_device *evt)
{
	long ret = tickless_hypercall(TICKLESS_HYPERCALL_SET_PERIODIC, TICK_NSEC, 0);

	periodic_on = ret == 0;
	return ret;
}

static struct clock_event_device tickless_ce = {
	.name = "tickless",
	.features = CLOCK_EVT_FEAT_ONESHOT | CLOCK_EVT_FEAT_PERIODIC,
	.rating = 400, /* above lapic-deadline (150): the tick runs on us */
	.mult = 1,
	.shift = 0,
	.min_delta_ns = TICKLESS_MIN_DELTA_NS,
	.min_delta_ticks = TICKLESS_MIN_DELTA_NS,
	.max_delta_ns = TICKLESS_MAX_DELTA_NS, /* 64-bit, unscaled: no overflow to cap */
	.max_delta_ticks = TICKLESS_MAX_DELTA_NS,
	.set_next_event = tickless_set_next_event,
	.set_state_shutdown = tickless_shutdown,
	.set_state_oneshot = tickless_set_oneshot,
	.set_state_oneshot_stopped = tickless_shutdown,
	.set_state_periodic = tickless_set_periodic,
	.irq = TICKLESS_LINUX_TIMER_IRQ,
};

static irqreturn_t tickless_timer_interrupt(int irq, void *dev_id)
{
	struct clock_event_device *evt = dev_id;

	tickless_count(irq_count);
	/*
	 * The host delivers at the deadline itself: check it did, against the deadline it
	 * says it fired (written before the interrupt). Not against the page's deadline: the
	 * kernel may have moved that later between the host's fire and this handler (a
	 * re-arm with interrupts off), and the interrupt is then only stale, not early.
	 */
	if (pv_on) {
		u64 fired = READ_ONCE(tickless_shared->pv_fired_ns);

		if (fired && tickless_clock_ns() < fired)
			tickless_count(pv_early_irqs);
	}
	if (is_idle_task(current))
		tickless_count(wakeups); /* the CPU was idle (halted): the event woke it */
	evt->event_handler(evt);
	return IRQ_HANDLED;
}

/*
 * The timer IRQ's flow: acknowledge (the local APIC's EOI; the IOAPIC pin is edge
 * triggered) and run the handler, as the LAPIC timer's system vector does. The generic
 * edge flow would also feed each timer interrupt to the entropy pool, which arms a
 * timer for the next jiffy whenever a second has passed since its last mix: one more
 * tick after nearly every wake-up of an idle guest.
 */
static void tickless_timer_flow(struct irq_desc *desc)
{
	struct irq_data *data = irq_desc_get_irq_data(desc);

	data->chip->irq_ack(data);
	tickless_timer_interrupt(irq_desc_get_irq(desc), &tickless_ce);
}

static DECLARE_COMPLETION(selftest_fired);

static void selftest_handler(struct clock_event_device *evt)
{
	complete(&selftest_fired);
}

/*
 * The min-delta check, through the clockevents core's own path. The device is told a
 * minimum of 1 ns, below the host's, and asked for an event that is already due with
 * force set, as the tick does for an expiry in the past: clockevents_program_event()
 * goes to clockevents_program_min_delta(), whose 1 ns the host refuses with -ETIME three
 * times; clockevents_increase_min_delta() raises the minimum to 5 us, which the host
 * takes, and the event must then arrive on our IRQ. That proves the refusal, the core's
 * handling of it and the interrupt's routing before the device may carry the tick.
 */
static int __init min_delta_selftest(struct clock_event_device *evt)
{
	unsigned long flags;
	u64 raised;
	int ret;

	evt->event_handler = selftest_handler;
	evt->min_delta_ns = 1;
	clockevents_switch_state(evt, CLOCK_EVT_STATE_ONESHOT);
	local_irq_save(flags);
	ret = clockevents_program_event(evt, ktime_get(), true);
	local_irq_restore(flags);
	raised = evt->min_delta_ns;
	if (!ret && !wait_for_completion_timeout(&selftest_fired, HZ))
		ret = -ETIMEDOUT;
	clockevents_switch_state(evt, CLOCK_EVT_STATE_SHUTDOWN);
	evt->event_handler = clockevents_handle_noop;
	evt->min_delta_ns = TICKLESS_MIN_DELTA_NS;
	if (ret == -ETIMEDOUT)
		pr_err("self-test: no interrupt on IRQ %d (is it in the MP table?)\n", evt->irq);
	else if (ret)
		pr_err("self-test: the host refused every delta (%d)\n", ret);
	if (ret)
		return ret;
	pr_info("min-delta check: %llu deltas below %d ns refused with -ETIME, %lu clockevents retries, min_delta raised to %llu ns, event on IRQ %d\n",
		READ_ONCE(tickless_shared->ce_etime), TICKLESS_MIN_DELTA_NS, evt->retries, raised,
		evt->irq);
	if (!READ_ONCE(tickless_shared->ce_etime))
		pr_warn("the host took a delta below its minimum of %d ns\n", TICKLESS_MIN_DELTA_NS);
	return 0;
}

/*
 * The PV device's check before it may carry the tick: an event 1 ms ahead, through the
 * clockevents core, must arrive on our IRQ (the host's loop injects through the IOAPIC).
 */
static int __init pv_selftest(struct clock_event_device *evt)
{
	unsigned long flags;
	int ret;

	evt->event_handler = selftest_handler;
	clockevents_switch_state(evt, CLOCK_EVT_STATE_ONESHOT);
	local_irq_save(flags);
	ret = clockevents_program_event(evt, ktime_add_ns(ktime_get(), NSEC_PER_MSEC), false);
	local_irq_restore(flags);
	if (!ret && !wait_for_completion_timeout(&selftest_fired, HZ))
		ret = -ETIMEDOUT;
	clockevents_switch_state(evt, CLOCK_EVT_STATE_SHUTDOWN);
	evt->event_handler = clockevents_handle_noop;
	if (ret)
		pr_err("pv self-test: no interrupt on IRQ %d (%d)\n", evt->irq, ret);
	else
		pr_info("pv self-test: event on IRQ %d, %llu kicks\n", evt->irq,
			READ_ONCE(tickless_shared->pv_kicks));
	return ret;
}

int __init tickless_clockevent_init(void)
{
	struct clock_event_device *evt = &tickless_ce;
	int ret;

	pv_on = tickless_boot->timer == TICKLESS_TIMERPATH_PV;
	if (pv_on) {
		evt->name = "tickless-pv";
		evt->features = CLOCK_EVT_FEAT_ONESHOT;
		evt->set_next_event = tickless_pv_set_next_event;
		evt->set_state_shutdown = tickless_pv_shutdown;
		evt->set_state_oneshot = NULL;
		evt->set_state_oneshot_stopped = tickless_pv_shutdown;
		evt->set_state_periodic = NULL;
		evt->min_delta_ns = evt->min_delta_ticks = TICKLESS_PV_MIN_DELTA_NS;
	}

	evt->cpumask = cpumask_of(0);
	evt->event_handler = clockevents_handle_noop; /* until the self-test's own */
	ret = request_irq(evt->irq, tickless_timer_interrupt, IRQF_TIMER, "tickless", evt);
	if (ret) {
		pr_err("cannot claim IRQ %d: %d\n", evt->irq, ret);
		return ret;
	}
	irq_set_handler(evt->irq, tickless_timer_flow);
	ret = pv_on ? pv_selftest(evt) : min_delta_selftest(evt);
	if (ret) { /* Linux stays on lapic-deadline */
		irq_set_handler(evt->irq, handle_edge_irq);
		free_irq(evt->irq, evt);
		return ret;
	}
	clockevents_register_device(evt);
	tickless_clockevent_registered = true;
	pr_info("clock-event device tickless registered (rating %d, min %llu ns)\n",
		evt->rating, evt->min_delta_ns);
	return 0;
}
