#!/usr/bin/env node
// llama.cpp's CPU speed on one GGUF, measured through node-llama-cpp's prebuilt binaries, so llmd can
// be compared side by side on the same file, threads and token counts (scripts/bench-vs-llamacpp.sh).
//
//   node bench.mjs --model M.gguf [--threads 2] [--prompt-tokens 512] [--gen-tokens 128]
//                  [--runs 5] [--warmup 1] [--flash-attention auto|on|off] [--seed 1]
//
// Prints one JSON object on stdout: {"prefill_tok_s", "decode_tok_s", ...} (medians over the runs).
// Diagnostics (llama.cpp release, the CPU variant it loaded, per-run numbers) go to stderr.
//
// One run: a fresh sequence evaluates the prompt (random token ids, one batch) and samples one token
// greedily: prefill = prompt tokens / that time. Then --gen-tokens more greedy steps of one token
// each: decode = gen tokens / their time. Sampling is included in both, as in a real server.
import fs from "node:fs";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    threads: { type: "string", default: "2" },
    "prompt-tokens": { type: "string", default: "512" },
    "gen-tokens": { type: "string", default: "128" },
    runs: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    "flash-attention": { type: "string", default: "auto" },
    seed: { type: "string", default: "1" },
  },
});

function die(msg) {
  process.stderr.write(`bench.mjs: error: ${msg}\n`);
  process.exit(1);
}
function positive(name) {
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < 0) die(`--${name} must be a non-negative integer, got '${opt[name]}'`);
  return n;
}

if (!opt.model) die("--model M.gguf is required");
if (!fs.existsSync(opt.model)) die(`${opt.model}: no such file`);
const threads = positive("threads");
const promptTokens = positive("prompt-tokens");
const genTokens = positive("gen-tokens");
const runs = Math.max(1, positive("runs"));
const warmup = positive("warmup");
const seed = positive("seed");
const flashAttention = { auto: "auto", on: true, off: false }[opt["flash-attention"]];
if (flashAttention === undefined) die("--flash-attention must be auto, on or off");
if (threads < 1) die("--threads must be at least 1");

// llama.cpp's own timings (llama_perf_context_print) arrive as info-level log lines; they are kept
// for parsing and everything else at info level is dropped.
let perfLog = "";
const logger = (level, message) => {
  if (message.includes("llama_perf_context_print")) perfLog += message + "\n";
  else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(message + "\n");
};
// CPU only, never a local build or a download: the prebuilt binary is the thing being measured.
const llama = await getLlama({
  gpu: false,
  build: "never",
  skipDownload: true,
  logLevel: LlamaLogLevel.info,
  logger,
  maxThreads: threads,
});
const model = await llama.loadModel({ modelPath: opt.model, gpuLayers: 0 });

// The context holds prompt + generation; the batch holds the whole prompt so prefill is one batch.
const contextSize = Math.max(1024, promptTokens + genTokens + 16);
const context = await model.createContext({
  contextSize,
  batchSize: Math.max(512, promptTokens),
  sequences: 1,
  threads: { ideal: threads, min: threads },
  flashAttention,
  performanceTracking: true,
});
if (context.idealThreads !== threads) die(`llama.cpp context wants ${context.idealThreads} threads, not ${threads}`);

// Which of ggml's CPU variants (libggml-cpu-<arch>.so) the dynamic loader picked for this CPU.
function loadedCpuVariant() {
  try {
    const maps = fs.readFileSync("/proc/self/maps", "utf8");
    const m = maps.match(/libggml-cpu-([\w-]+)\.so/);
    return m ? m[1] : "unknown";
  } catch {
    return "unknown";
  }
}

// A deterministic prompt of random ids, avoiding the control/special ids at the low end.
function makePrompt(n, vocab) {
  let s = seed >>> 0 || 1;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const lo = Math.min(259, vocab - 1);
  return Array.from({ length: n }, () => lo + Math.floor(rand() * (vocab - lo)));
}
const embd = model.fileInfo.fullTensorInfo?.find((t) => t.name === "token_embd.weight");
const vocab = embd ? Number(embd.dimensions[1]) : 32000;
const prompt = makePrompt(promptTokens, vocab);

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// llama.cpp's counters since the last call (then reset): the prompt batch is "prompt eval", each
// single-token step is "eval". Both leave out sampling and the binding's own overhead.
async function takeLlamaTimings() {
  perfLog = "";
  await context.printTimings();
  await new Promise((r) => setTimeout(r, 10));  // the log lines arrive through an async callback
  const grab = (what) => {
    const m = perfLog.match(new RegExp(`${what} time =\\s*([\\d.]+) ms /\\s*(\\d+) (tokens|runs)`));
    return m ? Number(m[2]) / (Number(m[1]) / 1000) : null;
  };
  return { prefill: grab("prompt eval"), decode: grab("(?<!prompt )eval") };
}

async function oneRun() {
  const seq = context.getSequence();
  try {
    const t0 = now();
    let tFirst = 0;
    let produced = 0;
    // yieldEogToken: a random model may emit EOS; keep generating so every run decodes the same count.
    for await (const _ of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      if (produced === 0) tFirst = now();
      if (produced === genTokens) break;
      produced++;
    }
    const tEnd = now();
    const internal = await takeLlamaTimings();
    return {
      prefill: promptTokens / (tFirst - t0),
      decode: genTokens > 0 ? genTokens / (tEnd - tFirst) : 0,
      prefillInternal: internal.prefill,
      decodeInternal: internal.decode,
    };
  } finally {
    seq.dispose();
  }
}

const info = {
  release: llama.llamaCppRelease?.release,
  repo: llama.llamaCppRelease?.repo,
  build: llama.buildType,
  cpu_variant: loadedCpuVariant(),
};
process.stderr.write(`llama.cpp ${info.repo}@${info.release} (${info.build}), CPU variant ${info.cpu_variant}\n`);
process.stderr.write(`system: ${llama.systemInfo}\n`);
process.stderr.write(
  `model ${opt.model}: context ${context.contextSize}, batch ${context.batchSize}, threads ${threads}, ` +
    `flash attention ${opt["flash-attention"]}\n`,
);

for (let i = 0; i < warmup; i++) await oneRun();
const prefill = [];
const decode = [];
const prefillInternal = [];
const decodeInternal = [];
const f1 = (x) => (x == null ? "n/a" : x.toFixed(1));
for (let i = 0; i < runs; i++) {
  const r = await oneRun();
  prefill.push(r.prefill);
  decode.push(r.decode);
  if (r.prefillInternal != null) prefillInternal.push(r.prefillInternal);
  if (r.decodeInternal != null) decodeInternal.push(r.decodeInternal);
  process.stderr.write(
    `run ${i + 1}/${runs}: prefill ${f1(r.prefill)} tok/s, decode ${f1(r.decode)} tok/s ` +
      `(inside llama.cpp: ${f1(r.prefillInternal)}, ${f1(r.decodeInternal)})\n`,
  );
}

const round = (x) => Math.round(x * 100) / 100;
process.stdout.write(
  JSON.stringify({
    prefill_tok_s: round(median(prefill)),
    decode_tok_s: round(median(decode)),
    // The same runs timed inside llama.cpp (llama_perf), without node-llama-cpp's per-call overhead
    // or sampling: what llama.cpp's own tools would report.
    llama_internal_prefill_tok_s: prefillInternal.length ? round(median(prefillInternal)) : null,
    llama_internal_decode_tok_s: decodeInternal.length ? round(median(decodeInternal)) : null,
    prompt_tokens: promptTokens,
    gen_tokens: genTokens,
    threads,
    runs,
    llama_cpp: info,
  }) + "\n",
);
await context.dispose();
await model.dispose();
await llama.dispose();
