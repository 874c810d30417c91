"""The table of bench/instructions.sh: instructions per unit of work, per
thread and library, from two callgrind runs of a job (R1 and R2
repetitions) whose per-thread profiles the script flattened.

Usage: instructions.py WORK CASE R1 R2 STEPS KERNEL_US TOP
"""
import collections
import glob
import os
import sys

COLUMNS = ["pathflow", "Open MPI", "libc", "bench", "other"]


def own_file(where):
    """The library of a line of code from a pathflow tree (this one, or the
    build of another checkout being compared): the bench's own programs
    under bench/, libpathflow for the rest. The system's code comes as
    ./... (glibc's build paths), ??? or /usr/...; callgrind_annotate writes
    a file under the directory it runs in relative to it (runtime/x.c)."""
    path = where.rsplit(":", 1)[0]
    if path.startswith(("./", "???", "/usr/")):
        return "?"
    return "dispatch" if "/bench/" in path else "libpathflow.so"


def load(tsv):
    """A thread's instructions by (function, library), and its counted calls."""
    ir = collections.Counter()
    rows, lib_of = [], {}
    for line in open(tsv):
        where, lib, n = line.rstrip("\n").split("\t")
        # A function's clones (GCC's .part.0, .isra.0, .lto_priv.0: link-time
        # optimization renames the static ones) count as the function.
        name = where.rsplit(":", 1)[-1].split(".", 1)[0]
        lib = lib.rsplit("/", 1)[-1]
        if lib:
            lib_of.setdefault(name, lib)
        rows.append((where, name, lib, int(n.replace(",", ""))))
    # Lines of code inlined into a function from another file are listed
    # apart, without the library: the function's, or by the file's place.
    for where, name, lib, n in rows:
        if not lib:
            lib = lib_of.get(name) or own_file(where)
        ir[(name, lib)] += n
    calls = collections.Counter()
    for line in open(tsv[: -len(".tsv")] + ".calls"):
        name, n = line.split()
        calls[name] += int(n)
    return ir, calls


def threads(work, case, reps):
    """A run's threads by role: thread 1 is the main thread; pathflow's loop
    thread is the one that ran its poll (threads are numbered in the order
    they started, which Open MPI's own threads may change from run to run)."""
    out = {}
    for tsv in glob.glob(f"{work}/{case}.{reps}-*.tsv"):
        ir, calls = load(tsv)
        names = {name for name, _ in ir}
        if "on_spin" in names or "loop_main" in names:
            out["pathflow loop"] = (ir, calls)
        elif tsv.endswith("-01.tsv"):
            out["main (MPI loop)"] = (ir, calls)
    return out


def group(lib):
    if lib.startswith("libpathflow"):
        return "pathflow"
    if lib.startswith(("libmpi", "mca_", "libopen-", "libpmix", "libevent", "libhwloc")):
        return "Open MPI"
    if lib.startswith(("libc.", "ld-linux", "libm.")):
        return "libc"
    if lib.startswith(("granularity", "dispatch")):
        return "bench"
    return "other"


def main():
    work, case, r1, r2, steps, kernel, top = sys.argv[1:8]
    steps, top = int(steps), int(top)
    none = (collections.Counter(), collections.Counter())
    a, b = threads(work, case, r1), threads(work, case, r2)

    def units(role):
        if case == "stencil":
            return (int(r2) - int(r1)) * steps
        key = "t_collective" if role == "pathflow loop" else "PMPI_Allreduce"
        return b[role][1][key] - a.get(role, none)[1][key]

    if case == "stencil":
        what = f"a stencil step (bench/granularity, {steps} steps, {kernel} us kernels)"
    else:
        what = "a Chained computation (bench/dispatch -k chained: a scalar allreduce and an add)"
    print(f"# instructions per unit, {what}; 2 ranks, rank 1 under callgrind, "
          f"runs of {r2} and {r1} repetitions")
    print("%-18s %8s %10s" % ("thread", "units", "total") + "".join("%12s" % c for c in COLUMNS))
    rows = {}
    for role in ["main (MPI loop)", "pathflow loop"]:
        n = units(role) if role in b else 0
        if n <= 0:
            continue
        before = a.get(role, none)[0]
        diff = {k: (v - before.get(k, 0)) / n for k, v in b[role][0].items()}
        rows[role] = diff
        by = collections.Counter()
        for (_, lib), v in diff.items():
            by[group(lib)] += v
        print("%-18s %8d %10.0f" % (role, n, sum(by.values()))
              + "".join("%12.0f" % by[c] for c in COLUMNS))
    if "pathflow loop" not in rows:
        return
    polls = b["pathflow loop"][1]["poll_mpi"] - a.get("pathflow loop", none)[1]["poll_mpi"]
    print("# the loop polled %.2f times a unit: Open MPI's column and pathflow's polling "
          "(pf_mpi_progress, poll_mpi, cpu_claim...) grow with that, what runs per op does not"
          % (polls / units("pathflow loop")))
    print(f"# the loop thread's {top} costliest functions, instructions per unit (self)")
    ranked = sorted(rows["pathflow loop"].items(), key=lambda kv: -kv[1])[:top]
    for (name, lib), v in ranked:
        print("%10.1f  %-40s %s" % (v, name[:40], lib))


main()
