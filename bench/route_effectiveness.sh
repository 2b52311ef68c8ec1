#!/usr/bin/env bash
# Does cache-aware routing pay? (issue 5) Eight `llmd serve --sim` servers (a latency model: a
# prefill costs per uncached token, so a prefix-cache hit is real time saved; each server's KV cache
# holds only part of the workload's prefixes) behind `llmd route`, driven by `llmd bench` with a
# shared-prefix workload whose requests go round robin over the groups, at a rate that overloads
# servers picked at random. Each router configuration gets fresh servers (empty caches):
#   precise      precise-prefix-cache-scorer (the servers' KV events, with llm-d's speculative
#                indexing of each decision for 2 s) + queue + kv-cache-utilization
#   approximate  llm-d's default profile (prefix-cache-scorer learnt from its own decisions)
#   random       random-picker alone
# The prefix-cache hit rate is summed over the eight servers' vllm:prefix_cache_{hits,queries}; the
# best possible one computes each group's prefix once. Prints a markdown table (medians of --runs).
#
#   bench/route_effectiveness.sh [--runs 3] [--rate 120] [--groups 32] [--questions 16]
#                                [--prefix 1024] [--question 64] [--output 16] [--build build]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=3 rate=120 groups=32 questions=16 prefix=1024 question=64 output=16 build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --questions) questions=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --question) question=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "route_effectiveness: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
die() { echo "route_effectiveness: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build)"
model="$root/../shared/models/stories260K.gguf"  # its tokenizer makes the prompts token ids
[[ -f "$model" ]] || die "$model: no such file"
fingerprint="sim:$(stat -c %s "$model")"          # what `llmd serve --sim --model` keys with
n_servers=8
# Each server's cache: 640 blocks of 16 tokens = 10 of the 32 prefixes (64 blocks each, plus
# room for the questions in flight): a server that sees every group thrashes.
blocks=${BLOCKS:-640}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/precise.yaml" <<'EOF'
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: precise-prefix-cache-scorer
  parameters: {speculativeIndexing: true, speculativeTTL: 2s}
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: precise-prefix-cache-scorer, weight: 3}
  - {pluginRef: max-score-picker}
EOF
cat >"$work/random.yaml" <<'EOF'
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: random-picker}]
EOF

# Prints "hit_rate ttft_p50 ttft_p90 ttft_p99 e2e_p50 throughput failed" for one run of one config.
run_one() {
  local config=$1 ports=() events=() endpoints="" p e
  pids=()
  for i in $(seq $n_servers); do
    p=$(free_port) e=$(free_port)
    "$llmd" serve --sim --model "$model" --port "$p" --kv-events-endpoint "tcp://127.0.0.1:$e" \
      --sim-block-count $blocks --sim-prefill-ms-per-token 0.05 --sim-decode-ms-per-step 4 \
      --max-num-seqs 64 >"$work/s$i.log" 2>&1 &
    pids+=($!) ports+=("$p") events+=("$e")
    endpoints+="127.0.0.1:$p;kv-events=tcp://127.0.0.1:$e,"
  done
  for p in "${ports[@]}"; do wait_healthy "$p"; done
  local rport cfg=()
  rport=$(free_port)
  case $config in
    precise) cfg=(--config "$work/precise.yaml") ;;
    random) cfg=(--config "$work/random.yaml") ;;
  esac
  "$llmd" route --port "$rport" --endpoints "${endpoints%,}" --kv-fingerprint "$fingerprint" "${cfg[@]}" \
    >"$work/router.log" 2>&1 &
  pids+=($!)
  wait_healthy "$rport"
  sleep 0.5  # first scrapes, and the KV-event subscriptions joined
  metrics() { for p in "${ports[@]}"; do curl -s "http://127.0.0.1:$p/metrics"; done; }
  metrics >"$work/before.txt"
  "$llmd" bench --base-url "http://127.0.0.1:$rport" --model sim-model --tokenizer "$model" \
    --workload shared-prefix --num-groups "$groups" --questions-per-group "$questions" --prefix-len "$prefix" \
    --question-len "$question" --output-len "$output" --num-requests $(( groups * questions )) \
    --request-rate "$rate" --seed 1 --json "$work/out.json" >"$work/bench.log" 2>&1 || { cat "$work/bench.log" >&2; die "bench failed"; }
  metrics >"$work/after.txt"
  python3 - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
def total(path, name):
    s = 0.0
    for line in open(path):
        if line.startswith(name + "{") or line.startswith(name + " "):
            s += float(line.rsplit(" ", 1)[1])
    return s
hits = total(f"{w}/after.txt", "vllm:prefix_cache_hits_total") - total(f"{w}/before.txt", "vllm:prefix_cache_hits_total")
queries = total(f"{w}/after.txt", "vllm:prefix_cache_queries_total") - total(f"{w}/before.txt", "vllm:prefix_cache_queries_total")
j = json.load(open(f"{w}/out.json"))
t, e = j["ttft_ms"], j["e2e_ms"]
print(hits / queries if queries else 0, t["p50"], t["p90"], t["p99"], e["p50"], j["request_throughput"], j["requests_failed"])
EOF
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

best=$(python3 -c "n=$groups*$questions; print(((n-$groups)*$prefix)/(n*($prefix+$question)))")
echo "8 sim servers (prefill 0.05 ms/token, decode 4 ms/step, $blocks KV blocks each), shared-prefix: $groups groups x $questions questions, prefix $prefix + question $question tokens, output $output, $rate req/s Poisson; $runs runs, medians; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| routing | prefix-cache hit rate | vs best possible ($(printf %.4f "$best")) | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | E2E p50 ms | req/s | failed |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for config in precise approximate random; do
  rows=()
  for _ in $(seq "$runs"); do rows+=("$(run_one $config)"); done
  col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{print $c}' | median; }
  printf '| %s | %.4f | %.1f%% | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n' "$config" "$(col 1)" \
    "$(python3 -c "print(100*$(col 1)/$best)")" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)"
done
