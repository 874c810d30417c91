/* Internal to the pathflow command-line tool. */
#ifndef PF_TOOLS_TOOL_H
#define PF_TOOLS_TOOL_H

#include <stdio.h>

#include "graph/graph_internal.h"
#include "scheduler/schedule.h"

/* A simulated cluster from "HOSTS:RANKS_PER_HOST:DEVICES_PER_RANK" (ranks
 * dealt round-robin over hosts). Returns 0 or PF_EINVAL. */
int tool_cluster(const char *spec, int64_t memory, pf_cluster *out);

/* A graph environment with the built-in kernels for `devices` devices. */
int tool_env(int devices, pf_graph_env *env, pf_diag *diag);

/* Sample graphs: "mlp" (data-parallel layers with an allreduce), "pipeline"
 * (one stage per device), "stencil" (Task Bench 1-D stencil), "train" (a
 * data-parallel + pipeline training step, `steps` microbatches). `devices`
 * sizes them. */
int tool_example(const char *name, int devices, int steps, const pf_graph_env *env,
                 pf_graph **out);

/* Human-readable plan report, and Graphviz of the graph and of the plan. */
void tool_print_plan(FILE *f, const pf_graph *g, const pf_compiled *c, const pf_cluster *cl);
void tool_dot_graph(FILE *f, const pf_graph *g);
void tool_dot_plan(FILE *f, const pf_compiled *c);

/* Draws the metrics CSV `csv` (kind,epoch,step,loss,accuracy rows, as
 * train_mlp --metrics writes them) as an SVG chart in `svg`. Returns 0, or
 * -1 with the reason in why. */
int tool_chart(const char *csv, const char *svg, char *why, size_t len);

/* pathflow sim (tools/sim.c): its usage text, and the command. */
extern const char tool_sim_usage[];
int tool_sim(int argc, char **argv);

/* pathflow calibrate (tools/calibrate.c): its usage text, and the command
 * (0, 1 for a failure, 2 or -1 for a usage error). */
extern const char tool_calibrate_usage[];
int tool_calibrate(int argc, char **argv);

/* `pathflow cluster check FILE|PRESET` and `pathflow cluster show PRESET`
 * (tools/cluster.c): 0 or 1 (the error printed), -1 for a usage error. */
int tool_cluster_cmd(int argc, char **argv);

#endif
