// SPDX-License-Identifier: MIT
/*
 * Holding the mm event thread for tests (see mmhold.h).
 *
 * State under h.lock; the hooks run on the event thread (before_event) and
 * on flushing threads (flush_before_wait).  A release that comes before the
 * thread reaches the hook (a flush that saw the thread busy in read())
 * still counts: release stays set until the next arm.
 */
#include "mmhold.h"

#include <pthread.h>
#include <string.h>

#include "core/atomic.h"
#include "harness.h"
#include "mm/mm.h"

#define LOG_MAX 64

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool armed;		/* hold the next event */
	bool taken;		/* the armed event reached the hook */
	bool held;		/* the event thread waits in the hook */
	bool release;		/* let it go */
	uint8_t event;		/* type of the event held */
	unsigned int flush_waits;
	char log[LOG_MAX];
	unsigned int nlog;
} h = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void before_event(struct gvm_mm *mm, uint8_t ev)
{
	(void)mm;
	pthread_mutex_lock(&h.lock);
	if (h.armed) {
		h.armed = false;
		h.taken = true;
		h.held = true;
		h.event = ev;
		pthread_cond_broadcast(&h.cond);
		while (!h.release)
			pthread_cond_wait(&h.cond, &h.lock);
		h.held = false;
	}
	pthread_mutex_unlock(&h.lock);
}

static void log_locked(char c)
{
	if (h.nlog < LOG_MAX - 1)
		h.log[h.nlog++] = c;
}

static void flush_before_wait(struct gvm_mm *mm)
{
	(void)mm;
	pthread_mutex_lock(&h.lock);
	h.flush_waits++;
	log_locked('W');
	h.release = true;
	pthread_cond_broadcast(&h.cond);
	pthread_mutex_unlock(&h.lock);
}

void mmhold_install(void)
{
	pthread_mutex_lock(&h.lock);
	h.armed = h.taken = h.held = false;
	h.release = true;
	h.flush_waits = 0;
	h.nlog = 0;
	pthread_mutex_unlock(&h.lock);
	gvm_store_release(&gvm__mm_self_before_event, before_event);
	gvm_store_release(&gvm__mm_flush_before_wait, flush_before_wait);
}

void mmhold_uninstall(void)
{
	pthread_mutex_lock(&h.lock);
	ASSERT_FALSE(h.held);
	h.armed = false;
	pthread_mutex_unlock(&h.lock);
	gvm_store_release(&gvm__mm_self_before_event, NULL);
	gvm_store_release(&gvm__mm_flush_before_wait, NULL);
}

void mmhold_arm(void)
{
	pthread_mutex_lock(&h.lock);
	ASSERT_FALSE(h.held);
	h.armed = true;
	h.taken = false;
	h.release = false;
	pthread_mutex_unlock(&h.lock);
}

uint8_t mmhold_wait_held(void)
{
	uint8_t ev;

	pthread_mutex_lock(&h.lock);
	while (!h.taken)
		pthread_cond_wait(&h.cond, &h.lock);
	ev = h.event;
	pthread_mutex_unlock(&h.lock);
	return ev;
}

void mmhold_release(void)
{
	pthread_mutex_lock(&h.lock);
	h.release = true;
	pthread_cond_broadcast(&h.cond);
	pthread_mutex_unlock(&h.lock);
}

unsigned int mmhold_flush_waits(void)
{
	unsigned int n;

	pthread_mutex_lock(&h.lock);
	n = h.flush_waits;
	pthread_mutex_unlock(&h.lock);
	return n;
}

void mmhold_log(char c)
{
	pthread_mutex_lock(&h.lock);
	log_locked(c);
	pthread_mutex_unlock(&h.lock);
}

void mmhold_log_get(char *buf, unsigned int len)
{
	pthread_mutex_lock(&h.lock);
	if (len) {
		unsigned int n = h.nlog < len - 1 ? h.nlog : len - 1;

		memcpy(buf, h.log, n);
		buf[n] = '\0';
	}
	pthread_mutex_unlock(&h.lock);
}
