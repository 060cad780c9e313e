/* SPDX-License-Identifier: MIT */
/*
 * Intrusive circular doubly-linked lists (struct gvm_list from
 * <gvm/types.h>).  No locking: the owner of the list provides it.
 */
#ifndef GVM_CORE_LIST_H
#define GVM_CORE_LIST_H

#include <gvm/types.h>

#include "core/debug.h"

static inline void gvm_list_init(struct gvm_list *head)
{
	head->next = head;
	head->prev = head;
}

static inline bool gvm_list_empty(const struct gvm_list *head)
{
	return head->next == head;
}

static inline void gvm__list_insert(struct gvm_list *n, struct gvm_list *prev,
				    struct gvm_list *next)
{
	next->prev = n;
	n->next = next;
	n->prev = prev;
	prev->next = n;
}

/* Adds @n at the head of the list (first in iteration order). */
static inline void gvm_list_add(struct gvm_list *n, struct gvm_list *head)
{
	gvm__list_insert(n, head, head->next);
}

static inline void gvm_list_add_tail(struct gvm_list *n, struct gvm_list *head)
{
	gvm__list_insert(n, head->prev, head);
}

/* Unlinks @n and leaves it self-linked, so gvm_list_empty(n) is true. */
static inline void gvm_list_del(struct gvm_list *n)
{
	n->next->prev = n->prev;
	n->prev->next = n->next;
	gvm_list_init(n);
}

/* Moves every entry of @from to the tail of @to; @from becomes empty. */
static inline void gvm_list_splice_tail(struct gvm_list *from,
					struct gvm_list *to)
{
	if (gvm_list_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	gvm_list_init(from);
}

#define gvm_list_entry(ptr, type, member) gvm_container_of(ptr, type, member)

#define gvm_list_first_entry(head, type, member) \
	gvm_list_entry((head)->next, type, member)

#define gvm_list_for_each(pos, head) \
	for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* Safe against removal of @pos. */
#define gvm_list_for_each_safe(pos, tmp, head)                           \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
