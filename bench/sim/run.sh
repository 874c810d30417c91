#!/usr/bin/env bash
# pathflow's simulator beside SimGrid's SMPI, simulating the same program on
# the same platform in the same run (docs/performance.md, "The simulator
# against SimGrid"):
#
#   10 allreduces (sum) of 815,104 bytes (203,776 floats: 814 KB rounded so
#   that 1,024 ranks divide it) on 256 and 1,024 hosts
#
# Platform: N hosts of one device (one MPI rank), each with its own
# full-duplex link (BW each way) into a switch that adds nothing; LAT end to
# end (SimGrid: a <cluster> without backbone, LAT/2 on each private link,
# since a route crosses two of them). Same link model on both sides: SMPI
# runs with network/model:CM02 (max-min fair sharing, no TCP factors), no
# cross traffic, SMPI's bandwidth and latency factors 1, and computation not
# simulated (pathflow's side has no per-op, per-transfer or per-step cost).
# Collective: SMPI's allreduce selector `lr` (logical ring: reduce-scatter
# then allgather around the ranks, 2(N-1) steps of 1/N of the data), the
# model pathflow's `ring` simulates; SMPI's default allreduce grows linearly
# with the host count.
#
# Usage: bench/sim/run.sh [BUILD_DIR] [HOSTS...]   (default: build, 256 1024)
# Environment: REPS (default 3): runs of each side, medians reported;
#   BW (bytes/s, default 12.5e9), LAT (seconds, default 5e-6).
# SimGrid comes from Debian (libsimgrid-dev, which carries smpicc and
# smpirun); this script installs it when missing (root or sudo needed) and
# says so plainly when it cannot.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
[ $# -gt 0 ] && shift
hosts_list=${*:-256 1024}
reps=${REPS:-3}
bw=${BW:-12.5e9}
lat=${LAT:-5e-6}
# The simulator uses no BLAS: OpenBLAS's idle threads would only spin beside it.
export OPENBLAS_NUM_THREADS=1
count=203776
bytes=$((count * 4))
steps=10

install_simgrid() {
  dpkg-query -W -f='${Status}' libsimgrid-dev 2>/dev/null | grep -q "install ok installed" && return 0
  echo "bench/sim: SimGrid (Debian libsimgrid-dev) is missing; installing it" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
      echo "bench/sim: SimGrid is MISSING and this user cannot install it (no root, no sudo):" >&2
      echo "bench/sim:   apt-get install libsimgrid-dev, then run this again" >&2
      exit 1
    fi
  fi
  if ! { DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends libsimgrid-dev >/dev/null; }; then
    echo "bench/sim: SimGrid is MISSING: installing libsimgrid-dev failed; the comparison cannot run" >&2
    exit 1
  fi
}
install_simgrid
command -v smpicc >/dev/null && command -v smpirun >/dev/null || {
  echo "bench/sim: SimGrid is MISSING: smpicc/smpirun not found after installing libsimgrid-dev" >&2
  exit 1
}

[ -x "$build/bench/sim_allreduce" ] || cmake --build "$build" --target sim_allreduce -j2 >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
smpicc -O2 -o "$work/allreduce_mpi" "$root/bench/sim/allreduce_mpi.c"

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (shared with other jobs: wall times are medians of $reps)"
echo "platform: N hosts, private full-duplex links of $bw B/s, $lat s end to end; $steps allreduces of $bytes B"
echo "SMPI: SimGrid $(dpkg-query -W -f='${Version}' libsimgrid-dev), allreduce selector lr, network/model:CM02"
printf "%-8s %6s %12s %10s %10s %14s %10s %10s %9s %9s\n" side hosts predicted_s wall_s maxRSS_MiB events \
  "" "" speedup pred_diff
for n in $hosts_list; do
  plat=$work/p$n.xml hostfile=$work/h$n
  {
    echo "<?xml version='1.0'?>"
    echo '<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">'
    echo '<platform version="4.1">'
    echo "  <cluster id=\"c\" prefix=\"h\" suffix=\"\" radical=\"0-$((n - 1))\" speed=\"1Gf\""
    echo "           bw=\"${bw}Bps\" lat=\"$(awk -v l="$lat" 'BEGIN {printf "%.12g", l / 2}')s\" sharing_policy=\"FULLDUPLEX\"/>"
    echo '</platform>'
  } >"$plat"
  seq 0 $((n - 1)) | sed 's/^/h/' >"$hostfile"
  pw=() ; sw=() ; prss=0 ; srss=0 ; ptime= ; stime= ; pev=
  for _ in $(seq "$reps"); do
    out=$("$build/bench/sim_allreduce" "$n" "$bytes" "$steps" "$bw" "$lat")
    ptime=$(echo "$out" | awk '{print $2}'); pw+=("$(echo "$out" | awk '{print $4}')")
    pev=$(echo "$out" | awk '{print $6}'); r=$(echo "$out" | awk '{print $8}'); [ "$r" -gt "$prss" ] && prss=$r
    /usr/bin/time -f "%e %M" -o "$work/time" smpirun -np "$n" -platform "$plat" -hostfile "$hostfile" \
      "$work/allreduce_mpi" "$count" "$steps" \
      --cfg=smpi/allreduce:lr --cfg=network/model:CM02 --cfg=network/crosstraffic:0 \
      --cfg=smpi/bw-factor:1 --cfg=smpi/lat-factor:1 --cfg=smpi/simulate-computation:no \
      --cfg=smpi/display-timing:0 --log=root.thres:critical >"$work/smpi.out" 2>"$work/smpi.err" || {
        echo "bench/sim: smpirun failed on $n hosts:" >&2; tail -5 "$work/smpi.err" >&2; exit 1; }
    stime=$(awk '/^smpi_time/ {print $2}' "$work/smpi.out")
    sw+=("$(cut -d' ' -f1 "$work/time")"); r=$(cut -d' ' -f2 "$work/time"); [ "$r" -gt "$srss" ] && srss=$r
  done
  pm=$(printf "%s\n" "${pw[@]}" | median) sm=$(printf "%s\n" "${sw[@]}" | median)
  printf "%-8s %6d %12.6f %10.3f %10.1f %14s\n" pathflow "$n" "$ptime" "$pm" "$(awk -v k="$prss" 'BEGIN {print k/1024}')" "$pev"
  printf "%-8s %6d %12.6f %10.3f %10.1f %14s %10s %10s %8.1fx %+8.2f%%\n" smpi "$n" "$stime" "$sm" \
    "$(awk -v k="$srss" 'BEGIN {print k/1024}')" "-" "" "" "$(awk -v a="$sm" -v b="$pm" 'BEGIN {print a/b}')" \
    "$(awk -v p="$ptime" -v s="$stime" 'BEGIN {print 100*(p-s)/s}')"
done
