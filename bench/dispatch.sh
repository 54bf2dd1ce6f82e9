#!/usr/bin/env bash
# Dispatch figures beside the Node.js task-farm peer, in one run: REPS
# interleaved repetitions of
#   dispatch_bench farm            (2 CPUs)   vs  forkbench.js farm 200000 2 64
#   taskset -c 0 dispatch_bench farm (1 CPU)  vs  the same pinned
#   dispatch_bench collatz         (speed-up from 1 to 2 workers)
# then medians and the ratios against the goals (farm >= 5x the peer,
# collatz speed-up >= 1.85).
#
#   bench/dispatch.sh                 # build-bench/, 3 repetitions
#   DISPATCH_REPS=5 bench/dispatch.sh
#
# Knobs: DISPATCH_BUILD (build-bench), DISPATCH_REPS (3), DISPATCH_N
# (200000 tasks), DISPATCH_COLLATZ_N (10000000), SHOAL_PEERS_DIR
# (../shared/peers next to the checkout). Needs bench/dispatch.cmake in the
# build (the dispatch_bench target); builds it if missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${DISPATCH_BUILD:-$ROOT/build-bench}
REPS=${DISPATCH_REPS:-3}
N=${DISPATCH_N:-200000}
CN=${DISPATCH_COLLATZ_N:-10000000}
PEERS_DIR=${SHOAL_PEERS_DIR:-$ROOT/../shared/peers}
BENCH=$BUILD/bench/dispatch_bench

if [[ ! -x $BENCH ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSHOAL_TESTS=OFF >/dev/null
  cmake --build "$BUILD" --target dispatch_bench -j"$(nproc)" >/dev/null
fi
command -v node >/dev/null || { echo "dispatch.sh: node (Node.js) is needed for the peer" >&2; exit 1; }

runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
run() { # TAG COMMAND...: keeps the peer= lines, tagged
  local tag=$1; shift
  timeout -k 5 300 "$@" | grep '^peer=' | sed "s/^peer=\([^ ]*\)/peer=\1$tag/" | tee -a "$runs" >&2
}
for ((rep = 1; rep <= REPS; rep++)); do
  echo "# repetition $rep of $REPS" >&2
  run "" "$BENCH" farm "$N"
  run "" node "$PEERS_DIR/node/forkbench.js" farm "$N" 2 64
  run _1cpu taskset -c 0 "$BENCH" farm "$N"
  run _1cpu taskset -c 0 node "$PEERS_DIR/node/forkbench.js" farm "$N" 2 64
  run "" "$BENCH" collatz "$CN"
done

median() { # PEER KEY
  grep "^peer=$1 " "$runs" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | sort -g |
    awk '{v[NR]=$1} END {if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'
}
s2=$(median shoal_farm_2w tasks_per_s); n2=$(median node_fork_farm_2w tasks_per_s)
s1=$(median shoal_farm_2w_1cpu tasks_per_s); n1=$(median node_fork_farm_2w_1cpu tasks_per_s)
sp=$(median shoal_collatz_speedup speedup)
t1=$(median shoal_collatz_speedup t1_s); t2=$(median shoal_collatz_speedup t2_s)
echo "# medians of $REPS runs"
echo "peer=shoal_farm_2w runs=$REPS tasks_per_s=$s2"
echo "peer=node_fork_farm_2w runs=$REPS tasks_per_s=$n2"
echo "peer=shoal_farm_2w_1cpu runs=$REPS tasks_per_s=$s1"
echo "peer=node_fork_farm_2w_1cpu runs=$REPS tasks_per_s=$n1"
echo "peer=shoal_collatz_speedup runs=$REPS n=$CN t1_s=$t1 t2_s=$t2 speedup=$sp"
awk -v s2="$s2" -v n2="$n2" -v s1="$s1" -v n1="$n1" -v sp="$sp" 'BEGIN {
  printf "ratio farm 2cpu shoal/node = %.2f (goal >= 5)\n", s2 / n2
  printf "ratio farm 1cpu shoal/node = %.2f (goal >= 5)\n", s1 / n1
  printf "collatz speed-up 1 -> 2 workers = %.2f (goal >= 1.85)\n", sp
}'
