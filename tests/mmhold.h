/* SPDX-License-Identifier: MIT */
/*
 * Holding gvm_mm_self's event thread between reading an event and
 * processing it, to force "the application's call returned, gvm has not
 * applied the change yet" deterministically (no sleeps).
 *
 * mmhold_install() sets the mm test hooks (mm/mm.h); mmhold_arm() makes
 * the event thread stop at the next event it reads, before its
 * invalidation, until something releases it: mmhold_release() from any
 * thread, or a flush that finds the thread busy and is about to wait (so
 * that a correct flush never deadlocks against a held thread, and a
 * missing one is caught).  A small log records the order of what happened
 * ('W': a flush was about to wait; tests add their own letters).
 *
 *	mmhold_install();
 *	mmhold_arm();
 *	munmap(p, len);          // returns once the event is read
 *	mmhold_wait_held();      // the thread is now between read and process
 *	gvm_mm_flush(mm);        // releases it ('W'), waits for it
 *	mmhold_uninstall();
 */
#ifndef GVM_TEST_MMHOLD_H
#define GVM_TEST_MMHOLD_H

#include <stdbool.h>
#include <stdint.h>

void mmhold_install(void);
/* No event may be pending (held or armed). */
void mmhold_uninstall(void);
/* Hold the next event read. */
void mmhold_arm(void);
/*
 * Waits until the thread has read the armed event and reached the hook
 * with it (where it stays until released); returns its UFFD_EVENT_* type.
 */
uint8_t mmhold_wait_held(void);
/* Lets a held (or about to be held) event go. */
void mmhold_release(void);
/* Number of flushes that found the thread busy (the 'W's). */
unsigned int mmhold_flush_waits(void);

/* The order log: append a letter; copy it out (NUL-terminated). */
void mmhold_log(char c);
void mmhold_log_get(char *buf, unsigned int len);

#endif
