// SPDX-License-Identifier: MIT
#include <gvm/fence.h>
#include "harness.h"
TEST(smoke)
{
	struct gvm_fence *f;
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	ASSERT_OK(gvm_fence_signal(f));
	ASSERT_EQ(gvm_fence_signal(f), -EALREADY);
	gvm_fence_put(f);
}
