#!/usr/bin/env bash
# P/D disaggregation vs aggregated serving on a mixed workload (issue 6): long prompts with short
# answers among short chats, on the 160m synthetic model (CPU), both setups behind `llmd route`:
#   aggregated  two `llmd serve` (role both), llm-d's default profile
#   p/d         one prefill + one decode `llmd serve` (KV moved by --kv-transfer auto: shm on this host);
#               the router runs a prefill leg for prompts of >= 256 uncached tokens
#               (prefix-based-pd-decider), short chats go to the decode server whole
# Two `llmd bench` run at once against the router: "long" (random prompts of --long-input tokens,
# --long-output tokens out) and "chat" (--chat-input in, --chat-output out), each at its own Poisson
# rate. Prints TTFT and ITL p50/p99 per class and setup, medians of --runs (fresh servers each run).
# --pin gives each of the two servers a core of its own (taskset; cores 0 and 1), as separate machines
# would have, in every setup alike; the router and the generators run on any core.
# The decode server runs steps of at most --decode-batch-tokens tokens (--max-num-batched-tokens), so
# the prefill work left on it (short chats, the last partial block of a pulled prompt) comes in small
# chunks between decode steps; a third setup runs the two aggregated servers with the same budget.
#
#   bench/pd_mixed.sh [--runs 3] [--threads 1] [--long-rate 0.5] [--chat-rate 2] [--long-input 1024]
#                     [--long-output 4] [--chat-input 64] [--chat-output 48] [--seconds 30] [--pin]
#                     [--decode-batch-tokens 16] [--build build]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=3 threads=1 long_rate=0.5 chat_rate=2 long_input=1024 long_output=4 chat_input=64 chat_output=48
seconds=30 build="$root/build" pin=0 decode_batch=16
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --long-rate) long_rate=$2; shift 2 ;;
    --chat-rate) chat_rate=$2; shift 2 ;;
    --long-input) long_input=$2; shift 2 ;;
    --long-output) long_output=$2; shift 2 ;;
    --chat-input) chat_input=$2; shift 2 ;;
    --chat-output) chat_output=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --decode-batch-tokens) decode_batch=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "pd_mixed: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
die() { echo "pd_mixed: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build)"
demo="$root/../shared/models/stories260K.gguf"
work=$(mktemp -d)
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$work"' EXIT

model="$work/160m.gguf"
"$llmd" model synth --preset 160m --dtype q8_0 --seed 1 --tokenizer-from "$demo" --out "$model" >/dev/null

cat >"$work/pd.yaml" <<'EOF'
plugins:
- type: prefill-filter
- type: decode-filter
- type: queue-scorer
- type: prefix-cache-scorer
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 256}
- type: disagg-profile-handler
  parameters:
    deciders: {prefill: prefix-based-pd-decider}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}, {pluginRef: prefix-cache-scorer}]
EOF

serve() {  # port role core [max batched tokens]
  local on=() budget=()
  [[ $pin == 1 ]] && on=(taskset -c "$3")
  [[ -n ${4:-} ]] && budget=(--max-num-batched-tokens "$4")
  "${on[@]}" "$llmd" serve --model "$model" --served-model-name m --port "$1" --role "$2" --threads "$threads" \
    --num-kv-blocks 512 --kv-transfer-secret pd-bench "${budget[@]}" >"$work/serve-$1.log" 2>&1 &
  pids+=($!)
}

# Prints "long_ttft50 long_ttft99 chat_ttft50 chat_ttft99 chat_itl50 chat_itl99 failed".
one_run() {  # setup
  local a b r
  a=$(free_port) b=$(free_port) r=$(free_port)
  if [[ $1 == pd ]]; then
    serve "$a" prefill 0; serve "$b" decode 1 "$decode_batch"
    "$llmd" route --port "$r" --config "$work/pd.yaml" --tokenizer "$model" \
      --endpoints "127.0.0.1:$a;role=prefill,127.0.0.1:$b;role=decode" >"$work/route.log" 2>&1 &
  else
    local budget=""
    [[ $1 == aggregated-small ]] && budget=$decode_batch
    serve "$a" both 0 "$budget"; serve "$b" both 1 "$budget"
    "$llmd" route --port "$r" --tokenizer "$model" --endpoints "127.0.0.1:$a,127.0.0.1:$b" >"$work/route.log" 2>&1 &
  fi
  pids+=($!)
  wait_healthy "$a"; wait_healthy "$b"; wait_healthy "$r"
  sleep 0.5
  local common=(--base-url "http://127.0.0.1:$r" --model m --workload random --tokenizer "$model" --range-ratio 0
                --duration "$seconds" --num-requests 100000)
  "$llmd" bench "${common[@]}" --input-len "$long_input" --output-len "$long_output" --request-rate "$long_rate" \
    --seed 1 --json "$work/long.json" >/dev/null 2>&1 &
  local lp=$!
  "$llmd" bench "${common[@]}" --input-len "$chat_input" --output-len "$chat_output" --request-rate "$chat_rate" \
    --seed 2 --json "$work/chat.json" >/dev/null 2>&1
  wait "$lp"
  stop_all
  python3 -c "import json; l = json.load(open('$work/long.json')); c = json.load(open('$work/chat.json')); \
print(l['ttft_ms']['p50'], l['ttft_ms']['p99'], c['ttft_ms']['p50'], c['ttft_ms']['p99'], c['itl_ms']['p50'], \
c['itl_ms']['p99'], l['requests_failed'] + c['requests_failed'])"
}

declare -A res
for _ in $(seq "$runs"); do
  for setup in aggregated aggregated-small pd; do res[$setup]+="$(one_run "$setup")"$'\n'; done
done
col() { printf '%s' "$1" | awk -v c="$2" 'NF {print $c}' | median; }
echo "160m q8_0, $threads thread(s) per server, long: $long_input in / $long_output out at $long_rate req/s," \
  "chat: $chat_input in / $chat_output out at $chat_rate req/s, $seconds s, medians of $runs; $(nproc) cores" \
  "$([[ $pin == 1 ]] && echo ', one core per server')"
echo
echo "| setup | long TTFT p50 ms | long TTFT p99 ms | chat TTFT p50 ms | chat TTFT p99 ms | chat ITL p50 ms | chat ITL p99 ms | failed |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for setup in aggregated aggregated-small pd; do
  v=${res[$setup]}
  case $setup in
    pd) label="1 prefill + 1 decode ($decode_batch-token decode steps)" ;;
    aggregated-small) label="2 aggregated ($decode_batch-token steps)" ;;
    *) label="2 aggregated" ;;
  esac
  printf '| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d |\n' "$label" "$(col "$v" 1)" "$(col "$v" 2)" \
    "$(col "$v" 3)" "$(col "$v" 4)" "$(col "$v" 5)" "$(col "$v" 6)" \
    "$(printf '%s' "$v" | awk 'NF {s += $7} END {print s}')"
done
