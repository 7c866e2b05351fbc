// The official openai npm SDK, pointed at sluice as a user would point it:
// every call below goes client -> sluice -> the mock upstream and back,
// through the SDK's own parsers, streaming helpers, errors and retries.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI, { toFile } from 'openai';

import { metric, oneKeyConf, start } from './harness.mjs';

const KEY = 'sk-sdk-test-key-000001';
const LIMITED = 'sk-sdk-test-key-000002'; // rpm = 1
const NARROW = 'sk-sdk-test-key-000003'; // gpt-4o-mini only
const SPENT = 'sk-sdk-test-key-000004'; // a quota of 12 tokens
const PATIENT = 'sk-sdk-test-key-000005'; // rpm = 1, waits up to 5 s for room
const SINGLE = 'sk-sdk-test-key-000006'; // one request open at a time

const conf = oneKeyConf(KEY, `
[key limited]
key = ${LIMITED}
rpm = 1

[key narrow]
key = ${NARROW}
models = gpt-4o-mini

[key spent]
key = ${SPENT}
quota = 12
quota_period = day

[key patient]
key = ${PATIENT}
rpm = 1
queue_timeout = 5s

[key single]
key = ${SINGLE}
max_inflight = 1
`);

// A small valid WAV: 0.1 s of 16-bit mono silence.
function wav() {
  const samples = Buffer.alloc(1600);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0);
  head.writeUInt32LE(36 + samples.length, 4);
  head.write('WAVEfmt ', 8);
  head.writeUInt32LE(16, 16);
  head.writeUInt16LE(1, 20);
  head.writeUInt16LE(1, 22);
  head.writeUInt32LE(8000, 24);
  head.writeUInt32LE(16000, 28);
  head.writeUInt16LE(2, 32);
  head.writeUInt16LE(16, 34);
  head.write('data', 36);
  head.writeUInt32LE(samples.length, 40);
  return Buffer.concat([head, samples]);
}

describe('the official openai SDK through sluice', () => {
  let s;
  let client;
  const hello = [{ role: 'user', content: 'Say hello' }];

  before(async () => {
    // A 1.2 s window, so a client waiting Retry-After does not wait a minute.
    s = await start(conf, { SLUICE_WINDOW_MS: '1200' });
    client = new OpenAI({ baseURL: s.baseURL, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => s && (await s.stop()));

  test('chat.completions.create', async () => {
    const r = await client.chat.completions.create({ model: 'gpt-4o', messages: hello });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(r.usage.completion_tokens, 8);
    assert.match(r._request_id, /^[0-9a-f]{32}$/); // sluice's id, as the SDK reads it
  });

  test('chat.completions.create streamed, with the final usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o', messages: hello, stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(usage.completion_tokens, 8);
  });

  test('a tool call, whole and streamed', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const r = await client.chat.completions.create({ model: 'gpt-4o', messages: hello, tools });
    const call = r.choices[0].message.tool_calls[0];
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    const stream = client.chat.completions.stream({ model: 'gpt-4o', messages: hello, tools });
    const final = await stream.finalChatCompletion();
    const streamed = final.choices[0].message.tool_calls[0];
    assert.equal(streamed.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(streamed.function.arguments), { city: 'Paris' });
    // the loop's second turn: the tool's answer, then text
    const next = await client.chat.completions.create({
      model: 'gpt-4o', tools,
      messages: [...hello, r.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '18C' }],
    });
    assert.equal(next.choices[0].finish_reason, 'stop');
  });

  test('embeddings in base64 (the default) and in floats', async () => {
    const b64 = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a b', 'c'] });
    assert.equal(b64.data.length, 2);
    assert.deepEqual(b64.data[0].embedding.map((x) => Math.round(x * 10) / 10), [0.1, 0.2, 0.3]);
    const floats = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'a', encoding_format: 'float' });
    assert.deepEqual(floats.data[0].embedding, [0.1, 0.2, 0.3]);
    assert.equal(floats.usage.prompt_tokens, 1);
  });

  test('responses.create, whole and streamed', async () => {
    const r = await client.responses.create({ model: 'gpt-4o', input: 'one two three' });
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(r.usage.input_tokens, 3);
    const stream = client.responses.stream({ model: 'gpt-4o', input: 'one two' });
    let deltas = '';
    stream.on('response.output_text.delta', (e) => { deltas += e.delta; });
    const final = await stream.finalResponse();
    assert.equal(deltas, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(final.output_text, deltas);
    assert.equal(final.usage.output_tokens, 8);
  });

  test('a broken responses stream ends with the Responses API\'s own error event', async () => {
    const stream = await client.responses.create(
      { model: 'gpt-4o', input: 'one two', stream: true },
      { headers: { 'x-mock-drop-after': '4' } },
    );
    const events = [];
    const err = await (async () => { for await (const e of stream) events.push(e); })().catch((e) => e);
    assert.deepEqual(events.map((e) => e.type),
      ['response.created', 'response.output_item.added', 'response.content_part.added', 'response.output_text.delta']);
    assert.ok(err instanceof OpenAI.APIError, String(err)); // the SDK raises the event's error
    assert.equal(err.code, 'upstream_failed');
  });

  test('responses.create with tools: a function call, then the answer to it', async () => {
    const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: {} }, strict: false }];
    const r = await client.responses.create({ model: 'gpt-4o', input: 'weather?', tools });
    const call = r.output[0];
    assert.equal(call.type, 'function_call');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
    const answer = await client.responses.create({
      model: 'gpt-4o', tools,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny' }],
    });
    assert.equal(answer.output[0].type, 'message');
  });

  test('audio.transcriptions.create with a WAV (multipart)', async () => {
    const r = await client.audio.transcriptions.create({ file: await toFile(wav(), 'hello.wav'), model: 'whisper-1' });
    assert.equal(r.text, `mock transcription of ${wav().length} bytes by whisper-1`);
  });

  test('models.list and models.retrieve', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small', 'whisper-1']);
    const m = await client.models.retrieve('whisper-1');
    assert.equal(m.id, 'whisper-1');
    await assert.rejects(client.models.retrieve('no-such-model'), OpenAI.NotFoundError);
  });

  test('files: create, list, retrieve, content, delete (the stateful backend)', async () => {
    const f = await client.files.create({ file: await toFile(Buffer.from('{"a":1}\n'), 'in.jsonl'), purpose: 'batch' });
    assert.equal(f.object, 'file');
    const listed = [];
    for await (const x of client.files.list()) listed.push(x.id);
    assert.ok(listed.includes(f.id));
    assert.equal((await client.files.retrieve(f.id)).filename, 'in.jsonl');
    assert.equal(await (await client.files.content(f.id)).text(), '{"a":1}\n');
    assert.equal((await client.files.delete(f.id)).deleted, true);
  });

  test('AuthenticationError for a bad key', async () => {
    const bad = new OpenAI({ baseURL: s.baseURL, apiKey: 'sk-not-a-key-of-this-gateway', maxRetries: 0 });
    const err = await bad.chat.completions.create({ model: 'gpt-4o', messages: hello }).catch((e) => e);
    assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_api_key');
  });

  test('PermissionDeniedError for a model the key may not use', async () => {
    const narrow = new OpenAI({ baseURL: s.baseURL, apiKey: NARROW, maxRetries: 0 });
    const err = await narrow.chat.completions.create({ model: 'gpt-4o', messages: hello }).catch((e) => e);
    assert.ok(err instanceof OpenAI.PermissionDeniedError, String(err));
    assert.equal(err.code, 'model_not_allowed');
    assert.equal(err.param, 'model');
  });

  test('RateLimitError, and the SDK retry after retry-after-ms succeeding', async () => {
    const once = new OpenAI({ baseURL: s.baseURL, apiKey: LIMITED, maxRetries: 0 });
    await once.chat.completions.create({ model: 'gpt-4o', messages: hello });
    const err = await once.chat.completions.create({ model: 'gpt-4o', messages: hello }).catch((e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.equal(err.code, 'rate_limit_exceeded');
    const waitMs = Number(err.headers.get('retry-after-ms'));
    assert.ok(waitMs > 0 && waitMs <= 1200, String(waitMs));
    const patient = new OpenAI({ baseURL: s.baseURL, apiKey: LIMITED, maxRetries: 2 });
    const started = Date.now();
    const r = await patient.chat.completions.create({ model: 'gpt-4o', messages: hello });
    assert.equal(r.object, 'chat.completion');
    assert.ok(Date.now() - started < 5000);
    // one 429 for each SDK call that had to wait, each waited exactly once
    assert.ok((await metric(s.url, 'sluice_rate_limited_total', { key: 'limited', dimension: 'requests' })) >= 2);
  });

  test('no retry on insufficient_quota', async () => {
    const spent = new OpenAI({ baseURL: s.baseURL, apiKey: SPENT, maxRetries: 3 });
    await spent.chat.completions.create({ model: 'gpt-4o', messages: hello }); // 2 + 8 of 12 tokens
    const before = await metric(s.url, 'sluice_requests_total', { key: 'spent', model: 'gpt-4o', backend: '-', code: '429' });
    const err = await spent.chat.completions.create({ model: 'gpt-4o', messages: hello }).catch((e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.equal(err.code, 'insufficient_quota');
    assert.equal(err.type, 'insufficient_quota');
    const refused = await metric(s.url, 'sluice_requests_total', { key: 'spent', model: 'gpt-4o', backend: '-', code: '429' });
    assert.equal(refused - before, 1); // maxRetries 3, yet asked once: x-should-retry: false
  });

  test('queue_timeout: the SDK call waits for room, within the SDK\'s own timeout', async () => {
    const patient = new OpenAI({ baseURL: s.baseURL, apiKey: PATIENT, maxRetries: 0 });
    await patient.chat.completions.create({ model: 'gpt-4o', messages: hello });
    // the SDK sends X-Stainless-Timeout: 1; room comes in about 1.2 s: 429 at once
    let started = Date.now();
    const err = await patient.chat.completions
      .create({ model: 'gpt-4o', messages: hello }, { timeout: 1000 })
      .catch((e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.ok(Date.now() - started < 900, String(Date.now() - started));
    // the default timeout (10 minutes): it waits for the window, then 200
    started = Date.now();
    const r = await patient.chat.completions.create({ model: 'gpt-4o', messages: hello });
    assert.equal(r.object, 'chat.completion');
    assert.ok(Date.now() - started > 300 && Date.now() - started < 2500, String(Date.now() - started));
  });

  test('max_inflight: RateLimitError of type concurrency while a stream is open', async () => {
    const single = new OpenAI({ baseURL: s.baseURL, apiKey: SINGLE, maxRetries: 0 });
    const stream = await single.chat.completions.create(
      { model: 'gpt-4o', messages: hello, stream: true },
      { headers: { 'x-mock-chunk-delay-ms': '100' } },
    );
    const chunks = stream[Symbol.asyncIterator]();
    await chunks.next(); // open, holding the key's one slot
    const err = await single.chat.completions.create({ model: 'gpt-4o', messages: hello }).catch((e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.equal(err.type, 'concurrency');
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.headers.get('retry-after'), '1');
    while (!(await chunks.next()).done); // the stream ends: the slot is free
    const { data, response } = await single.chat.completions.create({ model: 'gpt-4o', messages: hello }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-ratelimit-limit-inflight'), '1');
    assert.equal(response.headers.get('x-ratelimit-remaining-inflight'), '0');
  });

  test('withResponse() reads the x-ratelimit-* headers', async () => {
    const limitedClient = new OpenAI({ baseURL: s.baseURL, apiKey: LIMITED, maxRetries: 3 });
    const { data, response } = await limitedClient.chat.completions.create({ model: 'gpt-4o', messages: hello }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '1');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(response.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d+)?m?s$/);
  });
});
