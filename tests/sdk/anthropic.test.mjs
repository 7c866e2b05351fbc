// The official Anthropic TypeScript SDK (@anthropic-ai/sdk), pointed at
// sluice as a coding agent's user would point it: every call below goes
// client -> sluice -> the mock upstream (which speaks the Messages API) and
// back, through the SDK's own parsers, stream helpers, errors and retries.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';

import { UPSTREAM_KEY, metric, start } from './harness.mjs';

const KEY = 'sk-sdk-anthropic-key-01';
const LIMITED = 'sk-sdk-anthropic-key-02'; // rpm = 1
const NARROW = 'sk-sdk-anthropic-key-03'; // claude-haiku-4-5 only

const conf = (mockUrl) => `
[server]
listen = 127.0.0.1:{port}

[backend claude]
type = anthropic
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}
models = claude-sonnet-4-5, claude-haiku-4-5
forward_headers = x-mock-*

[backend gone]
type = anthropic
url = http://127.0.0.1:1/v1
api_key = ${UPSTREAM_KEY}
models = claude-gone
breaker_failures = 1
breaker_trip = 60s

[key main]
key = ${KEY}

[key limited]
key = ${LIMITED}
rpm = 1

[key narrow]
key = ${NARROW}
models = claude-haiku-4-5
`;

const hello = [{ role: 'user', content: 'Say hello' }];
const weather = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

describe('the official Anthropic SDK through sluice', () => {
  let s;
  let client;

  before(async () => {
    // A 1.2 s window, so a client waiting retry-after does not wait a minute.
    s = await start(conf, { SLUICE_WINDOW_MS: '1200' });
    client = new Anthropic({ baseURL: s.url, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => s && (await s.stop()));

  test('messages.create', async () => {
    const r = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: hello });
    assert.equal(r.type, 'message');
    assert.equal(r.role, 'assistant');
    assert.deepEqual(r.content, [{ type: 'text', text: 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7' }]);
    assert.equal(r.stop_reason, 'end_turn');
    assert.equal(r.usage.output_tokens, 8);
    const { response } = await client.messages
      .create({ model: 'claude-sonnet-4-5', max_tokens: 3, messages: hello })
      .withResponse();
    assert.equal(response.headers.get('x-sluice-model'), 'claude-sonnet-4-5');
  });

  test('messages.stream: the helper\'s text events and final message', async () => {
    const stream = client.messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 5, messages: hello });
    let text = '';
    stream.on('text', (t) => { text += t; });
    const final = await stream.finalMessage();
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4');
    assert.equal(final.content[0].text, text);
    assert.equal(final.stop_reason, 'max_tokens');
    assert.equal(final.usage.output_tokens, 5);
  });

  test('a raw stream (stream: true): every event in order', async () => {
    const events = await client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 2, messages: hello, stream: true,
    });
    const types = [];
    for await (const e of events) types.push(e.type);
    assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta',
      'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  });

  test('tools: a tool_use, then the answer to its tool_result; streamed too', async () => {
    const first = await client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 64, tools: [weather], messages: [{ role: 'user', content: 'Weather in Paris?' }],
    });
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(use.input, { city: 'Paris' });
    const second = await client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 64, tools: [weather],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny' }] },
      ],
    });
    assert.equal(second.stop_reason, 'end_turn');
    assert.equal(second.content[0].type, 'text');
    const streamed = await client.messages
      .stream({ model: 'claude-sonnet-4-5', max_tokens: 64, tools: [weather], messages: hello })
      .finalMessage();
    assert.deepEqual(streamed.content[0].input, { city: 'Paris' });
  });

  test('messages.countTokens', async () => {
    const r = await client.messages.countTokens({
      model: 'claude-sonnet-4-5', system: 'Be brief.', messages: [{ role: 'user', content: 'one two three' }],
    });
    assert.deepEqual(r, { input_tokens: 5 });
  });

  test('the prompt cache\'s usage reaches the SDK and sluice counts all of the prompt', async () => {
    const before = await metric(s.url, 'sluice_tokens_total', { key: 'main', model: 'claude-haiku-4-5', direction: 'input' });
    const r = await client.messages.create(
      { model: 'claude-haiku-4-5', max_tokens: 4, system: 'a b c d e f g h i j', messages: hello },
      { headers: { 'x-mock-cache-write-tokens': '4', 'x-mock-cache-read-tokens': '6' } },
    );
    assert.deepEqual([r.usage.input_tokens, r.usage.cache_creation_input_tokens, r.usage.cache_read_input_tokens],
      [2, 4, 6]);
    const counted = await metric(s.url, 'sluice_tokens_total', { key: 'main', model: 'claude-haiku-4-5', direction: 'input' });
    assert.equal(counted - before, 12);
  });

  test('models.list and models.retrieve', async () => {
    const narrow = new Anthropic({ baseURL: s.url, apiKey: NARROW, maxRetries: 0 });
    const ids = [];
    for await (const m of narrow.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ['claude-haiku-4-5']);
    const one = await narrow.models.retrieve('claude-haiku-4-5');
    assert.equal(one.type, 'model');
    const err = await narrow.models.retrieve('claude-sonnet-4-5').catch((e) => e);
    assert.ok(err instanceof Anthropic.NotFoundError, String(err));
  });

  test('AuthenticationError for a bad key', async () => {
    const bad = new Anthropic({ baseURL: s.url, apiKey: 'sk-not-a-key-of-this-gateway', maxRetries: 0 });
    const err = await bad.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: hello }).catch((e) => e);
    assert.ok(err instanceof Anthropic.AuthenticationError, String(err));
    assert.equal(err.status, 401);
    assert.equal(err.error.type, 'error');
    assert.equal(err.error.error.type, 'authentication_error');
  });

  test('PermissionDeniedError for a model the key may not use', async () => {
    const narrow = new Anthropic({ baseURL: s.url, apiKey: NARROW, maxRetries: 0 });
    const err = await narrow.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: hello }).catch((e) => e);
    assert.ok(err instanceof Anthropic.PermissionDeniedError, String(err));
    assert.equal(err.error.error.type, 'permission_error');
  });

  test('BadRequestError naming what is missing', async () => {
    const err = await client.messages.create({ model: 'claude-sonnet-4-5', messages: hello }).catch((e) => e);
    assert.ok(err instanceof Anthropic.BadRequestError, String(err));
    assert.match(err.error.error.message, /max_tokens/);
  });

  test('RateLimitError with retry-after, and the SDK\'s own retry succeeding', async () => {
    const once = new Anthropic({ baseURL: s.url, apiKey: LIMITED, maxRetries: 0 });
    await once.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: hello });
    const err = await once.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: hello }).catch((e) => e);
    assert.ok(err instanceof Anthropic.RateLimitError, String(err));
    assert.equal(err.error.error.type, 'rate_limit_error');
    const waitMs = Number(err.headers.get('retry-after-ms'));
    assert.ok(waitMs > 0 && waitMs <= 1200, String(waitMs));
    assert.ok(Number(err.headers.get('retry-after')) >= 1);
    const patient = new Anthropic({ baseURL: s.url, apiKey: LIMITED, maxRetries: 2 });
    const started = Date.now();
    const r = await patient.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: hello });
    assert.equal(r.type, 'message');
    assert.ok(Date.now() - started < 5000);
    assert.ok((await metric(s.url, 'sluice_rate_limited_total', { key: 'limited', dimension: 'requests' })) >= 2);
  });

  test('OverloadedError (529) when no backend can take the model', async () => {
    const first = await client.messages.create({ model: 'claude-gone', max_tokens: 8, messages: hello }).catch((e) => e);
    assert.ok(first instanceof Anthropic.APIError && first.status === 502, String(first)); // the breaker opens
    const err = await client.messages.create({ model: 'claude-gone', max_tokens: 8, messages: hello }).catch((e) => e);
    assert.ok(err instanceof Anthropic.OverloadedError, String(err));
    assert.equal(err.status, 529);
    assert.equal(err.error.error.type, 'overloaded_error');
  });

  test('a stream cut by the upstream fails the SDK\'s stream with sluice\'s error event', async () => {
    const stream = client.messages.stream(
      { model: 'claude-sonnet-4-5', max_tokens: 8, messages: hello },
      { headers: { 'x-mock-drop-after': '5' } },
    );
    const err = await stream.finalMessage().catch((e) => e);
    assert.ok(err instanceof Error, String(err));
    assert.match(String(err.message || err), /upstream/i);
  });
});
