#!/bin/sh
# Checks that each layer includes only itself and the layers below it.
# Order, bottom to top: base kernels graph transport plan runtime scheduler,
# then sim and api side by side (neither includes the other). graph, transport
# and plan are siblings too: the plan (plans, their codec and their check)
# needs only base/, the kernel-name rule of kernels/ and the generated proto,
# so the scheduler that makes plans and the runtime that runs them both stand
# on it without either including the other or graph/. cuda/ (the CUDA
# kernels, built when PF_CUDA is on) sits beside kernels/: it implements the
# kernel interface, so it may include pathflow/kernel.h, but neither it nor
# kernels/ includes the other.
# A public header (pathflow/X.h) belongs to the layer that implements it, so
# a layer may include only the public headers of itself and the layers below.
root=${1:-.}
fail=0
rank() {
  case $1 in
    base) echo 0 ;; kernels|cuda) echo 1 ;; graph|transport|plan) echo 2 ;;
    runtime) echo 3 ;; scheduler) echo 4 ;; sim) echo 5 ;; api) echo 5 ;; *) echo -1 ;;
  esac
}
# The layer of each public header.
public_layer() {
  case $1 in
    export|version|error|types|tensor|attrs|counters) echo base ;;
    kernel) echo kernels ;;
    graph|grad) echo graph ;;
    context|execute) echo api ;;
    *) echo unknown ;;
  esac
}
for layer in base kernels cuda graph transport plan runtime scheduler sim api; do
  mine=$(rank $layer)
  for f in "$root/$layer"/*.[ch] "$root/$layer"/*.cu "$root/$layer"/*.cuh; do
    [ -e "$f" ] || continue
    for inc in $(sed -n 's/^#include "\([a-z]*\/[a-z_]*\).*/\1/p' "$f"); do
      case $inc in
        proto/*) continue ;;
        pathflow/kernel) [ "$layer" = cuda ] && continue
                         inc=$(public_layer kernel) ;;
        pathflow/*) inc=$(public_layer "${inc#pathflow/}") ;;
        *) inc=${inc%%/*} ;;
      esac
      theirs=$(rank "$inc")
      if [ "$theirs" -lt 0 ] || [ "$theirs" -gt "$mine" ] ||
         { [ "$theirs" -eq "$mine" ] && [ "$inc" != "$layer" ]; }; then
        echo "layer violation: $f includes $inc/ (a layer not below $layer)"
        fail=1
      fi
    done
  done
done
# The public headers themselves: each includes only headers of its own
# layer or below.
for f in "$root"/include/pathflow/*.h; do
  name=$(basename "$f" .h)
  mine=$(rank "$(public_layer "$name")")
  [ "$mine" -ge 0 ] || { echo "layer violation: $f has no layer (add it to public_layer)"; fail=1; }
  for inc in $(sed -n 's/^#include "\([a-z_]*\)\.h".*/\1/p' "$f"); do
    theirs=$(rank "$(public_layer "$inc")")
    if [ "$theirs" -lt 0 ] || [ "$theirs" -gt "$mine" ]; then
      echo "layer violation: $f includes pathflow/$inc.h (a layer above its own)"
      fail=1
    fi
  done
done
[ $fail -eq 0 ] && echo "layers: every include goes down"
exit $fail
