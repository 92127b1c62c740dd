#!/usr/bin/env bash
# What the `metrics` feature costs a near hit with no recorder installed:
# the hit_cost bench built without and with `--features metrics`, compared
# by instructions per hit (callgrind, deterministic) and by ns per hit
# (the two binaries run in 11 back-to-back pairs; the median pair ratio).
# About two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

executable() {
    cargo bench -q -p nearfar-benches --bench hit_cost --no-run --message-format=json "$@" \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
}
plain=$(executable)
metrics=$(executable --features metrics)
if [ -z "$plain" ] || [ "$plain" = "$metrics" ]; then
    echo "the two builds did not give two binaries: '$plain' '$metrics'" >&2
    exit 1
fi

# `hit_cost callgrind` counts two passes of 2^20 hits in `measured_hits`.
hits=$((2 << 20))
instructions() {
    valgrind --tool=callgrind --toggle-collect='*measured_hits*' \
        --callgrind-out-file=/dev/null "$1" callgrind 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
ir_plain=$(instructions "$plain")
ir_metrics=$(instructions "$metrics")

# Wall clock on this shared VM drifts by tens of percent between runs of
# the same binary, so the two run in pairs, back to back (which goes first
# alternates), and the figure is the median of the 11 pairs' ratios.
ns() { "$1" time | sed -n 's/.*: \([0-9.]*\) ns.*/\1/p'; }
ratios=()
pairs=()
for i in $(seq 1 11); do
    if [ $((i % 2)) -eq 1 ]; then
        a=$(ns "$plain"); b=$(ns "$metrics")
    else
        b=$(ns "$metrics"); a=$(ns "$plain")
    fi
    pairs+=("$a/$b")
    ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | sed -n 6p)

awk -v a="$ir_plain" -v b="$ir_metrics" -v h="$hits" -v m="$median" -v p="${pairs[*]}" 'BEGIN {
    printf "near hit, no recorder installed     plain     metrics   metrics / plain\n"
    printf "instructions per hit (callgrind)    %-9.2f %-9.2f %.4f\n", a / h, b / h, b / a
    printf "ns per hit, median of 11 pair ratios                    %.4f\n", m
    printf "(the pairs, plain/metrics ns per hit: %s)\n", p
}'
