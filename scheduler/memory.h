/* Internal: memory planning.
 *
 * Every buffer's lifetime is known at compile time: from its first writer to
 * its last reader, in the plan's (gang) order. Buffers that only ops of
 * their own device touch run in that order exactly, so when their lifetimes
 * do not overlap they may share memory: they get offsets in one arena per
 * device and step. Other buffers (inputs, outputs, transfer targets, buffers
 * read by other devices) keep their own allocation, freed after their last
 * read. The peak per device is the arena plus the most bytes of the others
 * live at once.
 */
#ifndef PF_SCHEDULER_MEMORY_H
#define PF_SCHEDULER_MEMORY_H

#include "plan/plan.h"

/* Places the shareable buffers of `p` (sets in_arena, offset and
 * p->arena_bytes) and writes each local device's peak bytes to
 * peak[0 .. p->num_devices). Errors: PF_ENOMEM. */
int pf_memory_plan(pf_plan *p, int64_t *peak, pf_diag *diag);

#endif
