// Starts the mock upstream and sluice on free loopback ports for the SDK
// suite, as tests/integration/harness.py does for pytest, and stops them by
// PID. SLUICE_BUILD names the build directory (default: build/).
import { File } from 'node:buffer';
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// File uploads in the SDK need the File global, which Node has from 20 on. On
// Debian's Node 18 the SDK's documented way is to take it from node:buffer.
if (typeof globalThis.File === 'undefined') globalThis.File = File;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const build = resolve(process.env.SLUICE_BUILD || join(root, 'build'));

export const UPSTREAM_KEY = 'upstream-secret-credential';

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function waitPort(port, proc, ms = 10000) {
  const deadline = Date.now() + ms;
  return new Promise((res, rej) => {
    const attempt = () => {
      if (proc.exitCode !== null) return rej(new Error(`exited early with ${proc.exitCode}`));
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); res(); });
      c.once('error', () => {
        c.destroy();
        if (Date.now() > deadline) rej(new Error(`port ${port} never opened`));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

function stopped(proc) {
  return new Promise((res) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return res(proc.exitCode);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20000);
    proc.once('exit', (code) => { clearTimeout(timer); res(code); });
    proc.kill('SIGTERM');
  });
}

const sanitizerMarks = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];

// A running mock and sluice; `conf(mockUrl)` gives sluice's configuration
// with {port} where its listen port goes (https: that listener is marked tls).
// A config of one backend (the mock, passing x-mock-* faults on) and the key
// `main`, then any more sections.
export const oneKeyConf = (key, more = '') => (mockUrl) => `
[server]
listen = 127.0.0.1:{port}

[backend mock]
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}
forward_headers = x-mock-*

[key main]
key = ${key}
${more}`;

export async function start(conf, env = {}, { https = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-sdk-'));
  const mockPort = await freePort();
  const mock = spawn(join(build, 'sluice-mock'), ['--port', String(mockPort), '--api-key', UPSTREAM_KEY],
                     { stdio: ['ignore', 'ignore', openSync(join(dir, 'mock.log'), 'w')] });
  await waitPort(mockPort, mock);
  const port = await freePort();
  const confPath = join(dir, 'sluice.conf');
  writeFileSync(confPath, conf(`http://127.0.0.1:${mockPort}/v1`).replaceAll('{port}', String(port)),
                { mode: 0o600 });
  const logPath = join(dir, 'sluice.log');
  const sluice = spawn(join(build, 'sluice'), ['-c', confPath], {
    stdio: ['ignore', 'ignore', openSync(logPath, 'w')],
    env: { ...process.env, http_proxy: '', https_proxy: '', ...env },
  });
  await waitPort(port, sluice);
  return {
    // The address sluice listens on ("localhost" may resolve to ::1 first).
    baseURL: `${https ? 'https' : 'http'}://127.0.0.1:${port}/v1`,
    url: `${https ? 'https' : 'http'}://127.0.0.1:${port}`,
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      const code = await stopped(sluice);
      await stopped(mock);
      const text = readFileSync(logPath, 'utf8');
      rmSync(dir, { recursive: true, force: true });
      const bad = text.split('\n').filter((l) => sanitizerMarks.some((m) => l.includes(m)));
      if (bad.length) throw new Error(`sanitizer reported:\n${text.slice(-4000)}`);
      if (code !== 0) throw new Error(`sluice exited with ${code}:\n${text.slice(-2000)}`);
    },
  };
}

// The sum of the series in sluice's /metrics that carry these labels
// (other labels, such as served_model, may take any value; 0 if none).
export async function metric(base, name, labels) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const got = new Set((m[2] || '').split(/,(?=\w+=")/).filter(Boolean));
    if (want.every((w) => got.has(w))) sum += Number(m[3]);
  }
  return sum;
}
