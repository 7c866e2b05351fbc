// Both translation directions, each driven by the SDK of the other
// dialect: the Anthropic SDK's Messages calls served by an OpenAI-compatible
// backend, and the openai SDK's chat completions served by an anthropic
// backend (the mock speaks both), through the SDKs' own parsers, stream
// helpers and error classes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { UPSTREAM_KEY, start } from './harness.mjs';

const KEY = 'sk-sdk-translate-key-01';

const conf = (mockUrl) => `
[server]
listen = 127.0.0.1:{port}

[backend gpt]
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}
models = gpt-4o
forward_headers = x-mock-*

[backend claude]
type = anthropic
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}
models = claude-sonnet-4-5
forward_headers = x-mock-*

[key main]
key = ${KEY}
`;

const hello = [{ role: 'user', content: 'Say hello' }];

describe('translation, each way driven by the other dialect\'s SDK', () => {
  let s;
  let anthropic;
  let openai;

  before(async () => {
    s = await start(conf);
    anthropic = new Anthropic({ baseURL: s.url, apiKey: KEY, maxRetries: 0 });
    openai = new OpenAI({ baseURL: s.baseURL, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => s && (await s.stop()));

  test('Anthropic SDK -> OpenAI backend: messages.create and usage', async () => {
    const r = await anthropic.messages.create({
      model: 'gpt-4o', max_tokens: 64, system: 'Be brief.', messages: hello,
    }, { headers: { 'x-mock-cached-tokens': '1' } });
    assert.equal(r.type, 'message');
    assert.deepEqual(r.content, [{ type: 'text', text: 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7' }]);
    assert.equal(r.stop_reason, 'end_turn');
    assert.equal(r.usage.output_tokens, 8);
    assert.equal(r.usage.cache_read_input_tokens, 1);
  });

  test('Anthropic SDK -> OpenAI backend: messages.stream, text events and the final message', async () => {
    const stream = anthropic.messages.stream({ model: 'gpt-4o', max_tokens: 4, messages: hello });
    let text = '';
    stream.on('text', (t) => { text += t; });
    const final = await stream.finalMessage();
    assert.equal(text, 'tok0 tok1 tok2 tok3');
    assert.equal(final.content[0].text, text);
    assert.equal(final.usage.output_tokens, 4);
  });

  test('Anthropic SDK -> OpenAI backend: a tool loop, whole and streamed', async () => {
    const tools = [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
    const first = await anthropic.messages.create({ model: 'gpt-4o', max_tokens: 64, tools, messages: hello });
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(use.input, { city: 'Paris' });
    const second = await anthropic.messages.create({
      model: 'gpt-4o', max_tokens: 64, tools,
      messages: [...hello, { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny' }] }],
    });
    assert.equal(second.stop_reason, 'end_turn');
    const streamed = await anthropic.messages.stream({ model: 'gpt-4o', max_tokens: 64, tools, messages: hello }).finalMessage();
    assert.deepEqual(streamed.content[0].input, { city: 'Paris' });
  });

  test('Anthropic SDK -> OpenAI backend: the upstream\'s 429 as RateLimitError, a refusal as BadRequestError', async () => {
    const err = await anthropic.messages.create({ model: 'gpt-4o', max_tokens: 8, messages: hello },
      { headers: { 'x-mock-status': '429' } }).catch((e) => e);
    assert.ok(err instanceof Anthropic.RateLimitError, String(err));
    assert.equal(err.error.error.type, 'rate_limit_error');
    const bad = await anthropic.messages.create({
      model: 'gpt-4o', max_tokens: 8, messages: hello, thinking: { type: 'enabled', budget_tokens: 1024 },
    }).catch((e) => e);
    assert.ok(bad instanceof Anthropic.BadRequestError, String(bad));
    assert.match(bad.error.error.message, /thinking/);
  });

  test('openai SDK -> anthropic backend: chat.completions.create', async () => {
    const r = await openai.chat.completions.create({
      model: 'claude-sonnet-4-5', messages: [{ role: 'system', content: 'Be brief.' }, ...hello], max_tokens: 6,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 tok3 tok4 tok5');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 6);
  });

  test('openai SDK -> anthropic backend: a stream with the usage chunk', async () => {
    const stream = await openai.chat.completions.create({
      model: 'claude-sonnet-4-5', messages: hello, stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(usage.completion_tokens, 8);
  });

  test('openai SDK -> anthropic backend: a tool call and its answer; the stream helper', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const first = await openai.chat.completions.create({ model: 'claude-sonnet-4-5', messages: hello, tools });
    const call = first.choices[0].message.tool_calls[0];
    assert.equal(first.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    const second = await openai.chat.completions.create({
      model: 'claude-sonnet-4-5', tools,
      messages: [...hello, first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'sunny' }],
    });
    assert.equal(second.choices[0].finish_reason, 'stop');
    const runner = openai.chat.completions.stream({ model: 'claude-sonnet-4-5', messages: hello, tools });
    const final = await runner.finalChatCompletion();
    assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris' });
  });

  test('openai SDK -> anthropic backend: BadRequestError naming what does not translate', async () => {
    const err = await openai.chat.completions.create({ model: 'claude-sonnet-4-5', messages: hello, n: 2 })
      .catch((e) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.equal(err.param, 'n');
  });
});
