#!/bin/sh
# Checks that each layer includes only itself and the layers below it.
# Order, bottom to top: base kernels graph transport runtime scheduler api.
root=${1:-.}
fail=0
rank() {
  case $1 in
    base) echo 0 ;; kernels) echo 1 ;; graph) echo 2 ;; transport) echo 2 ;;
    runtime) echo 3 ;; scheduler) echo 4 ;; api) echo 5 ;; *) echo -1 ;;
  esac
}
for layer in base kernels graph transport runtime scheduler api; do
  mine=$(rank $layer)
  for f in "$root/$layer"/*.[ch]; do
    [ -e "$f" ] || continue
    for inc in $(sed -n 's/^#include "\([a-z]*\)\/.*/\1/p' "$f"); do
      [ "$inc" = pathflow ] && continue
      [ "$inc" = proto ] && continue
      theirs=$(rank "$inc")
      if [ "$theirs" -lt 0 ] || [ "$theirs" -gt "$mine" ] ||
         { [ "$theirs" -eq "$mine" ] && [ "$inc" != "$layer" ]; }; then
        echo "layer violation: $f includes $inc/ (a layer not below $layer)"
        fail=1
      fi
    done
  done
done
[ $fail -eq 0 ] && echo "layers: every include goes down"
exit $fail
