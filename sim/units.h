/* Internal: quantities with units in the simulator's input files.
 *
 * A quantity is written "<number><unit>" or "<number> <unit>" (one space),
 * e.g. "400Gb/s", "1.5 us", "80GiB", "275TFLOP/s". Prefixes K M G T P are
 * decimal (powers of 1000) as vendors quote bandwidth and flops; byte
 * counts may also use the binary Ki Mi Gi Ti Pi (powers of 1024).
 */
#ifndef PF_SIM_UNITS_H
#define PF_SIM_UNITS_H

typedef enum pf_sim_quantity {
  PF_SIM_TIME,      /* seconds: s, ms, us, ns */
  PF_SIM_BANDWIDTH, /* bytes/s: B/s and b/s (bits) with a prefix */
  PF_SIM_BYTES,     /* bytes: B with a decimal or binary prefix */
  PF_SIM_FLOPS      /* flop/s: FLOP/s with a prefix */
} pf_sim_quantity;

/* Parses all of `s` as a quantity of kind q, in base units (seconds,
 * bytes/s, bytes, flop/s) into *out. A unit is required. Returns 0, or -1
 * (unknown unit, junk, no number, not finite), leaving *out unchanged. */
int pf_sim_parse_quantity(const char *s, pf_sim_quantity q, double *out);

/* What a quantity of kind q looks like, for error messages. */
const char *pf_sim_quantity_help(pf_sim_quantity q);

#endif
