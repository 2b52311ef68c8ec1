// Integration test: the official OpenAI Node SDK (npm `openai`, pinned in package.json) against
// `llmd serve` — completions and chat, streaming and not, models.list and the SDK's error classes.
//
//   node openai_sdk_test.mjs <path/to/llmd> <path/to/stories260K.gguf>
//
// The model's folder must hold stories260K.golden.json (llama.cpp's greedy completions). Prints one
// line per check and last "N passed, M failed"; exits 0 only when nothing failed. The server is
// always killed, and a global timeout makes sure the test never hangs.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch (e) {
  console.error(`cannot load the 'openai' package (${e.message}); run \`npm ci\` in ${path.dirname(fileURLToPath(import.meta.url))}`);
  process.exit(1);
}

const GLOBAL_TIMEOUT_MS = 90_000;
const HEALTH_TIMEOUT_MS = 20_000;
const MODEL_NAME = 'stories';
const API_KEY = 'llmd-sdk-test-key';

const [llmdBin, modelPath] = process.argv.slice(2);
if (!llmdBin || !modelPath) {
  console.error('usage: node openai_sdk_test.mjs <llmd binary> <stories260K.gguf>');
  process.exit(2);
}

// ---- the child server: always killed, whatever way this process ends ----
let server = null;
let serverStderr = '';
function killServer(signal = 'SIGKILL') {
  if (server && server.exitCode === null && server.signalCode === null) {
    try {
      server.kill(signal);
    } catch {}
  }
}
process.on('exit', () => killServer('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`openai_sdk_test: got ${sig}, stopping`);
    killServer('SIGKILL');
    process.exit(1);
  });
}

// ---- checks ----
let passed = 0;
let failed = 0;
function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}
function fail(name, detail) {
  failed++;
  console.log(`FAIL ${name}${detail ? `\n     ${detail.replace(/\n/g, '\n     ')}` : ''}`);
}
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    fail(name, detail);
  }
}
const show = (v) => JSON.stringify(v);
function checkEq(name, got, want) {
  check(name, got === want, `expected ${show(want)}\n     got      ${show(got)}`);
}
// Runs one group of checks; an exception in it is one failed check, and the other groups still run.
async function section(name, fn) {
  try {
    await fn();
  } catch (e) {
    const status = e && e.status !== undefined ? ` (status ${e.status})` : '';
    fail(`${name}: threw ${e?.constructor?.name ?? 'error'}${status}`, String(e?.stack ?? e));
  }
}

const globalTimer = setTimeout(() => {
  fail(`global timeout: the test did not finish within ${GLOBAL_TIMEOUT_MS / 1000} s`,
       `server stderr:\n${serverStderr.trimEnd()}`);
  killServer('SIGKILL');
  finish();
}, GLOBAL_TIMEOUT_MS);
globalTimer.unref();

process.on('unhandledRejection', (e) => {
  fail('unhandled rejection', String(e?.stack ?? e));
  finish();
});
process.on('uncaughtException', (e) => {
  fail('uncaught exception', String(e?.stack ?? e));
  finish();
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const port = await freePort();
  const args = ['serve', '--model', modelPath, '--port', String(port), '--served-model-name', MODEL_NAME,
                '--threads', '1', '--max-seq-len', '512', '--api-key', API_KEY];
  server = spawn(llmdBin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  server.stderr.setEncoding('utf8');
  server.stderr.on('data', (d) => { serverStderr += d; });
  let spawnError = null;
  server.on('error', (e) => { spawnError = e; });

  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`cannot start ${llmdBin}: ${spawnError.message}`);
    if (server.exitCode !== null || server.signalCode !== null)
      throw new Error(`llmd serve exited early (code ${server.exitCode}, signal ${server.signalCode});` +
                      ` stderr:\n${serverStderr.trimEnd()}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return port;
    } catch {}
    await sleep(100);
  }
  throw new Error(`llmd serve did not answer GET /health within ${HEALTH_TIMEOUT_MS / 1000} s;` +
                  ` stderr:\n${serverStderr.trimEnd()}`);
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  killServer('SIGTERM');
  const t = setTimeout(() => killServer('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

// ---- the test ----
const goldenPath = path.join(path.dirname(modelPath), 'stories260K.golden.json');
const golden = JSON.parse(readFileSync(goldenPath, 'utf8'))[0];

let port;
try {
  port = await startServer();
} catch (e) {
  fail('llmd serve starts and answers /health', e.message);
  killServer('SIGKILL');
  finish();
}
check('llmd serve starts and answers /health', true);

const baseURL = `http://127.0.0.1:${port}/v1`;
// No retries: a 5xx or a dropped connection must show up as a failure, not be hidden by a retry.
const client = new OpenAI({ baseURL, apiKey: API_KEY, maxRetries: 0, timeout: 20_000 });

await section('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  check(`models.list() contains '${MODEL_NAME}'`, ids.includes(MODEL_NAME), `got ids ${show(ids)}`);
});

let completionText = null;
await section('completions.create', async () => {
  const r = await client.completions.create({
    model: MODEL_NAME, prompt: golden.prompt, max_tokens: golden.max_tokens, temperature: 0,
  });
  checkEq('completion: object', r.object, 'text_completion');
  checkEq('completion: model', r.model, MODEL_NAME);
  check('completion: one choice', Array.isArray(r.choices) && r.choices.length === 1, `choices ${show(r.choices)}`);
  completionText = r.choices[0].text;
  checkEq('completion: text equals the golden completion', completionText, golden.completion);
  checkEq('completion: finish_reason', r.choices[0].finish_reason, 'length');
  checkEq('completion: usage.prompt_tokens', r.usage?.prompt_tokens, golden.prompt_tokens.length);
  checkEq('completion: usage.completion_tokens', r.usage?.completion_tokens, golden.max_tokens);
  checkEq('completion: usage.total_tokens', r.usage?.total_tokens, golden.prompt_tokens.length + golden.max_tokens);
});

await section('completions.create stream', async () => {
  const stream = await client.completions.create({
    model: MODEL_NAME, prompt: golden.prompt, max_tokens: golden.max_tokens, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finishReason = null;
  let usage = null;
  let chunks = 0;
  let usageBeforeEnd = false;
  for await (const chunk of stream) {
    chunks++;
    if (usage) usageBeforeEnd = true;  // the usage chunk must be the last one
    for (const c of chunk.choices ?? []) {
      text += c.text ?? '';
      if (c.finish_reason) finishReason = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check('completion stream: more than one chunk', chunks > 1, `got ${chunks} chunk(s)`);
  checkEq('completion stream: concatenated text equals the non-stream text', text, completionText ?? golden.completion);
  checkEq('completion stream: finish_reason', finishReason, 'length');
  check('completion stream: a final usage chunk arrives', usage !== null && !usageBeforeEnd,
        usage ? 'the usage chunk was not the last one' : 'no chunk had usage');
  checkEq('completion stream: usage.prompt_tokens', usage?.prompt_tokens, golden.prompt_tokens.length);
  checkEq('completion stream: usage.completion_tokens', usage?.completion_tokens, golden.max_tokens);
});

const chatParams = {
  model: MODEL_NAME, messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 16, temperature: 0,
};
let chatContent = null;
await section('chat.completions.create', async () => {
  const r = await client.chat.completions.create(chatParams);
  checkEq('chat: object', r.object, 'chat.completion');
  check('chat: one choice', Array.isArray(r.choices) && r.choices.length === 1, `choices ${show(r.choices)}`);
  const m = r.choices[0].message;
  checkEq('chat: message.role', m?.role, 'assistant');
  chatContent = m?.content;
  check('chat: message.content is a non-empty string', typeof chatContent === 'string' && chatContent.length > 0,
        `got ${show(chatContent)}`);
  checkEq('chat: finish_reason', r.choices[0].finish_reason, 'length');
  checkEq('chat: usage.completion_tokens', r.usage?.completion_tokens, 16);
});

await section('chat.completions.create stream', async () => {
  const stream = await client.chat.completions.create({ ...chatParams, stream: true });
  let content = '';
  let role = null;
  let finishReason = null;
  const objects = new Set();
  for await (const chunk of stream) {
    objects.add(chunk.object);
    for (const c of chunk.choices ?? []) {
      if (c.delta?.role) role = role ?? c.delta.role;
      content += c.delta?.content ?? '';
      if (c.finish_reason) finishReason = c.finish_reason;
    }
  }
  checkEq('chat stream: every chunk is a chat.completion.chunk', show([...objects]), show(['chat.completion.chunk']));
  checkEq('chat stream: delta role', role, 'assistant');
  checkEq('chat stream: content equals the non-stream content', content, chatContent);
  checkEq('chat stream: finish_reason', finishReason, 'length');
});

// The SDK's stream helper accumulates the chunks into a ChatCompletion and validates them on the way.
await section('chat.completions.stream helper', async () => {
  const runner = client.chat.completions.stream({ ...chatParams, stream_options: { include_usage: true } });
  const final = await runner.finalChatCompletion();
  checkEq('chat stream helper: final message.content', final.choices[0]?.message?.content, chatContent);
  checkEq('chat stream helper: final finish_reason', final.choices[0]?.finish_reason, 'length');
  checkEq('chat stream helper: usage.completion_tokens', final.usage?.completion_tokens, 16);
});

await section('wrong API key', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'not-the-key', maxRetries: 0, timeout: 20_000 });
  let err = null;
  try {
    await bad.completions.create({ model: MODEL_NAME, prompt: 'Hi', max_tokens: 1 });
  } catch (e) {
    err = e;
  }
  check('wrong API key: throws AuthenticationError with status 401',
        err instanceof OpenAI.AuthenticationError && err.status === 401,
        err ? `got ${err.constructor?.name} status ${err.status}: ${err.message}` : 'nothing was thrown');
});

await section('max_tokens 0', async () => {
  let err = null;
  try {
    await client.completions.create({ model: MODEL_NAME, prompt: 'Hi', max_tokens: 0 });
  } catch (e) {
    err = e;
  }
  check('max_tokens 0: throws BadRequestError with status 400',
        err instanceof OpenAI.BadRequestError && err.status === 400,
        err ? `got ${err.constructor?.name} status ${err.status}: ${err.message}` : 'nothing was thrown');
  check('max_tokens 0: the error names its parameter', err?.param === 'max_tokens',
        `got param ${show(err?.param)}, error ${show(err?.error)}`);
});

await stopServer();
if (failed > 0) console.log(`server stderr:\n${serverStderr.trimEnd()}`);
finish();
