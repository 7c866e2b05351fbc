// The official openai SDK with a JWT from the company's identity provider
// as its API key (issue #32): sluice checks the token against the
// provider's keys ([auth] jwks), takes the person from its sub and their
// team from its groups, and holds each person to the key profile's
// per-user limits. The keys are made here with Node's crypto (OpenSSL).
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { UPSTREAM_KEY, start } from './harness.mjs';

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'idp-1', use: 'sig', alg: 'RS256' };

function token(claims) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iss: 'https://idp.example.test/', aud: 'sluice', iat: now, exp: now + 600, ...claims };
  const signing = `${b64(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'idp-1' }))}.${b64(JSON.stringify(body))}`;
  return `${signing}.${b64(sign('sha256', Buffer.from(signing), privateKey))}`;
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-jwks-'));
writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));

const conf = (mockUrl) => `
[server]
listen = 127.0.0.1:{port}
access_log = on

[backend main]
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}

[team data]
rpm = 100

[key employees]
key = sk-employees-profile-key-0001
user_rpm = 2

[auth]
jwks = ${join(dir, 'jwks.json')}
issuer = https://idp.example.test/
audience = sluice
team_claim = groups
key_profile = employees
`;

describe('the openai SDK with a JWT as its API key', () => {
  let s;
  before(async () => {
    s = await start(conf);
  });
  after(async () => {
    if (s) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const ask = (client) =>
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });

  test('a good token is a person: answered, logged with their user and team', async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: token({ sub: 'ann@example.com', groups: ['data'] }), maxRetries: 0 });
    const r = await ask(client);
    assert.equal(r.object, 'chat.completion');
    const line = s.log().split('\n').filter((l) => l.includes(' access ')).pop();
    assert.match(line, / key=employees team=data user=ann@example\.com /);
  });

  test('each person has the profile\'s user_rpm, alone', async () => {
    const bo = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: token({ sub: 'bo' }), maxRetries: 0 });
    const cy = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: token({ sub: 'cy' }), maxRetries: 0 });
    await ask(bo);
    await ask(bo);
    await assert.rejects(ask(bo), (e) => e instanceof OpenAI.RateLimitError && /user bo of key employees/.test(e.message));
    assert.equal((await ask(cy)).object, 'chat.completion');
  });

  test('an expired token is the SDK\'s AuthenticationError, with the reason', async () => {
    const now = Math.floor(Date.now() / 1000);
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: token({ sub: 'ann', exp: now - 120 }), maxRetries: 0 });
    await assert.rejects(ask(client), (e) => e instanceof OpenAI.AuthenticationError && e.code === 'invalid_api_key' && /expired/.test(e.message));
  });

  test('a token of another audience is refused', async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: token({ sub: 'ann', aud: 'grafana' }), maxRetries: 0 });
    await assert.rejects(ask(client), (e) => e.status === 401 && /audience/.test(e.message));
  });
});
