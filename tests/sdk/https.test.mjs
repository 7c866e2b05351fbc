// The official openai SDK over HTTPS: sluice's listener marked tls, with a
// certificate from a test CA that only the SDK's process is told to trust.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { UPSTREAM_KEY, start } from './harness.mjs';

const KEY = 'sk-sdk-https-key-000001';
const here = dirname(fileURLToPath(import.meta.url));

function pki(dir) {
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=sdk test CA');
  ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  execFileSync('sh', ['-c', 'printf "subjectAltName=DNS:localhost,IP:127.0.0.1\\n" > ext'], { cwd: dir });
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', 'server.pem', '-days', '2', '-extfile', 'ext');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

function run(baseURL, ca) {
  const env = { ...process.env, http_proxy: '', https_proxy: '' };
  if (ca) env.NODE_EXTRA_CA_CERTS = ca;
  else delete env.NODE_EXTRA_CA_CERTS;
  return execFileSync(process.execPath, [join(here, 'https-client.mjs'), baseURL, KEY],
                      { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the official openai SDK over HTTPS', () => {
  let dir;
  let files;
  let s;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-sdk-tls-'));
    files = pki(dir);
    s = await start((mockUrl) => `
[server]
listen = 127.0.0.1:{port} tls
tls_cert = ${files.cert}
tls_key = ${files.key}

[backend mock]
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}

[key main]
key = ${KEY}
rpm = 2
`, {}, { https: true });
  });
  after(async () => {
    if (s) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('calls, a stream and the SDK\'s errors, all over TLS', () => {
    const out = JSON.parse(run(s.baseURL, files.ca));
    assert.equal(out.content, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(out.streamed, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(out.usage, 8);
    assert.deepEqual(out.second, { status: 429, type: 'requests', name: 'RateLimitError' });
    assert.deepEqual(out.bad, { status: 401, name: 'AuthenticationError' });
  });

  test('a client that does not trust the CA fails the handshake', () => {
    assert.throws(() => run(s.baseURL, null), (e) => /APIConnectionError|Connection error/.test(String(e.stderr)));
  });
});
