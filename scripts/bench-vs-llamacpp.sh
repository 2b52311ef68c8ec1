#!/usr/bin/env bash
# Side-by-side CPU speed of llmd and llama.cpp on the same GGUF, threads and token counts.
# llama.cpp is node-llama-cpp's prebuilt CPU build (bench/llamacpp/bench.mjs); llmd is `llmd model bench`.
# The two are run in alternation, round after round, so drift in the machine's load hits both alike;
# the table shows the median of the rounds (each round itself a median of --runs runs) and llmd's ratio.
#
#   scripts/bench-vs-llamacpp.sh [--model M.gguf] [--preset 160m] [--dtype q8_0] [--threads 2]
#                                [--rounds 3] [--runs 3] [--prompt-tokens 512] [--gen-tokens 128]
#                                [--llmd build/llmd] [--llamacpp-only]
#
# Without --model it synthesizes the preset (seed 0) into $BENCH_MODEL_DIR (default /tmp/llmd-bench)
# once. Spin-waiting thread pools (both engines use them) collapse when the cores are shared: run it
# on an otherwise idle machine, and read the load average printed with the table.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model="" preset=160m dtype=q8_0 threads=2 rounds=3 runs=3 prompt=512 gen=128
llmd="$root/build/llmd" llamacpp_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --prompt-tokens) prompt=$2; shift 2 ;;
    --gen-tokens) gen=$2; shift 2 ;;
    --llmd) llmd=$2; shift 2 ;;
    --llamacpp-only) llamacpp_only=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench-vs-llamacpp: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "bench-vs-llamacpp: $*" >&2; exit 1; }
command -v node >/dev/null || die "node (>= 20) is needed for the llama.cpp side"

harness="$root/bench/llamacpp"
if [[ ! -d "$harness/node_modules/node-llama-cpp" ]]; then
  echo "installing node-llama-cpp into $harness/node_modules ..." >&2
  # `npm install`, not `npm ci`: the registry lacks some platforms' optional prebuilts (mac, win,
  # riscv) at this version, so the lock file cannot list them and `npm ci` refuses it.
  (cd "$harness" && npm install --no-audit --no-fund >&2) || die "npm install failed in $harness"
fi

have_llmd=0
[[ -x "$llmd" ]] && have_llmd=1
if [[ -z "$model" ]]; then
  model="${BENCH_MODEL_DIR:-/tmp/llmd-bench}/synth-$preset-$dtype.gguf"
  if [[ ! -f "$model" ]]; then
    [[ $have_llmd == 1 ]] || die "$llmd not built: cannot synthesize $model (build it, or pass --model)"
    mkdir -p "$(dirname "$model")"
    "$llmd" model synth --preset "$preset" --dtype "$dtype" --out "$model" >&2
  fi
fi
[[ -f "$model" ]] || die "$model: no such file"

# The llmd side runs only where `llmd model bench` exists (another engineer's command).
run_llmd=0
if [[ $llamacpp_only == 0 && $have_llmd == 1 ]] && "$llmd" model bench --help >/dev/null 2>&1; then
  run_llmd=1
else
  echo "note: llmd side skipped (no '$llmd model bench', or --llamacpp-only)" >&2
fi

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for ((r = 1; r <= rounds; r++)); do
  if [[ $run_llmd == 1 ]]; then
    echo "round $r/$rounds: llmd ..." >&2
    "$llmd" model bench --model "$model" --prompt-tokens "$prompt" --gen-tokens "$gen" --threads "$threads" \
      -r "$runs" --json >"$results/llmd.$r.json" || die "llmd model bench failed"
  fi
  # llama.cpp's flash attention helps its prefill and hurts its decode: both settings are measured
  # and llmd is compared with the better one for each number.
  for fa in auto off; do
    echo "round $r/$rounds: llama.cpp (flash attention $fa) ..." >&2
    node "$harness/bench.mjs" --model "$model" --prompt-tokens "$prompt" --gen-tokens "$gen" \
      --threads "$threads" --runs "$runs" --warmup 1 --flash-attention "$fa" \
      >"$results/llamacpp-fa-$fa.$r.json" 2>"$results/llamacpp-fa-$fa.$r.log" ||
      { cat "$results/llamacpp-fa-$fa.$r.log" >&2; die "llama.cpp harness failed"; }
  done
done

# Medians and the table, computed in node (always present here) rather than with jq/bc.
RESULTS="$results" MODEL="$model" THREADS="$threads" PROMPT="$prompt" GEN="$gen" ROUNDS="$rounds" RUNS="$runs" \
  node --input-type=module -e '
import fs from "node:fs";
import os from "node:os";
const dir = process.env.RESULTS;
const load = (prefix) => fs.readdirSync(dir).filter((f) => f.startsWith(prefix + ".") && f.endsWith(".json"))
  .map((f) => JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8")));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmt = (x) => (x == null ? "n/a" : x.toFixed(1));
const ratio = (a, b) => (a == null || b == null ? "n/a" : (a / b).toFixed(2) + "x");
const summarize = (rs) => rs.length ? { prefill: median(rs.map((r) => r.prefill_tok_s)),
  decode: median(rs.map((r) => r.decode_tok_s)) } : null;
const llmd = summarize(load("llmd"));
const lcAuto = load("llamacpp-fa-auto"), lcOff = load("llamacpp-fa-off");
const lc = { auto: summarize(lcAuto), off: summarize(lcOff) };
const best = { prefill: Math.max(lc.auto?.prefill ?? 0, lc.off?.prefill ?? 0),
  decode: Math.max(lc.auto?.decode ?? 0, lc.off?.decode ?? 0) };
const info = lcAuto[0]?.llama_cpp ?? {};
const cpu = os.cpus()[0]?.model ?? "unknown CPU";
console.log(`model ${process.env.MODEL}, ${process.env.THREADS} threads, prompt ${process.env.PROMPT} tokens, ` +
  `${process.env.GEN} generated; ${process.env.ROUNDS} rounds x ${process.env.RUNS} runs; ${cpu}, ` +
  `load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
console.log("");
console.log("| engine | prefill tok/s | decode tok/s |");
console.log("|---|---:|---:|");
if (llmd) console.log(`| llmd | ${fmt(llmd.prefill)} | ${fmt(llmd.decode)} |`);
const name = `llama.cpp ${info.release ?? ""} (node-llama-cpp, CPU ${info.cpu_variant ?? "?"})`;
for (const fa of ["auto", "off"])
  console.log(`| ${name}, flash attention ${fa} | ${fmt(lc[fa]?.prefill)} | ${fmt(lc[fa]?.decode)} |`);
if (llmd) console.log(`| llmd / best llama.cpp | ${ratio(llmd.prefill, best.prefill)} | ${ratio(llmd.decode, best.decode)} |`);
'
