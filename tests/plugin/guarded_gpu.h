/* The guarded GPU plugin's pieces (tests/plugin/guarded_gpu.c), for its
 * direct test (test_guarded_gpu.c, built with the source). The module
 * exports only PF_DEVICE_PLUGIN_SYMBOL. */
#ifndef PF_TESTS_GUARDED_GPU_H
#define PF_TESTS_GUARDED_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/device_plugin.h"

/* Reserves the guarded range and its shadow (once per process). */
int gg_arena_init(char *err, size_t err_len);
/* A block of device memory (a guarded address), NULL when the arena is
 * full; freed with its size. */
void *gg_alloc(size_t nbytes);
void gg_free(void *p, size_t nbytes);
/* What a block of nbytes takes (its size class). */
size_t gg_block_bytes(size_t nbytes);
/* Bytes of the blocks allocated and not freed, all devices. */
size_t gg_live_bytes(void);
/* 1 if p lies in the guarded range. */
int gg_is_device(const void *p);
/* Where a device address's bytes live, or NULL if p is not one. */
void *gg_shadow(const void *p);
/* pf_box_copy. */
void gg_box_copy(void *dst, const int64_t *dst_dims, const void *src, const int64_t *src_dims,
                 const pf_box *box, size_t elem_size);
/* A device with its worker thread. */
int gg_device_create(const pf_device_host *host, int index, int rank, int64_t memory_bytes,
                     pf_clock *clock, pf_device **out);
/* The pf_stage mask it reports (PF_STAGE_ALL unless set). */
void gg_device_set_stage(pf_device *d, uint32_t stage);
/* Gives it the collectives of PATHFLOW_GUARDED_COLLECTIVES=1 (comm_id,
 * comm_join, comm_leave, collective), or takes them away (the default). */
void gg_device_set_collectives(pf_device *d, int on);
/* Copies it ran. */
uint64_t gg_device_copies(const pf_device *d);
/* The plugin's entry, PF_DEVICE_PLUGIN_SYMBOL (pf_device_plugin_open_fn). */
__attribute__((visibility("default"))) int pathflow_device_plugin_open(
    const pf_device_host *host, const pf_device_plugin_args *args, pf_device_plugin_result *out,
    char *err, size_t err_len);
/* Registers the GPU wrappers of the CPU built-ins found in reg. */
int gg_kernels_register(const pf_device_host *host, pf_registry *reg);

#endif
