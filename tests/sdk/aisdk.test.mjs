// The Vercel AI SDK (ai + @ai-sdk/openai), pointed at sluice: the Responses
// API (its default for OpenAI), chat completions, tools, and what it sees
// when an upstream stream breaks.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool } from 'ai';
import { z } from 'zod';

import { oneKeyConf, start } from './harness.mjs';

const KEY = 'sk-aisdk-test-key-00001';

const conf = oneKeyConf(KEY);

describe('the Vercel AI SDK through sluice', () => {
  let s;
  let openai;

  before(async () => {
    s = await start(conf);
    openai = createOpenAI({ baseURL: s.baseURL, apiKey: KEY });
  });
  after(async () => { await s.stop(); });

  test('generateText and streamText on the Responses API', async () => {
    const r = await generateText({ model: openai.responses('gpt-4o'), prompt: 'one two three', maxRetries: 0 });
    assert.equal(r.text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(r.usage.outputTokens, 8);
    const st = streamText({ model: openai.responses('gpt-4o'), prompt: 'one two', maxRetries: 0 });
    let text = '';
    for await (const t of st.textStream) text += t;
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
  });

  test('chat completions, streamed', async () => {
    const st = streamText({ model: openai.chat('gpt-4o'), prompt: 'one two', maxRetries: 0 });
    let text = '';
    for await (const t of st.textStream) text += t;
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
  });

  test('a tool call on the Responses API', async () => {
    const r = await generateText({
      model: openai.responses('gpt-4o'),
      prompt: 'weather in Paris?',
      tools: { get_weather: tool({ description: 'weather', inputSchema: z.object({ city: z.string() }) }) },
      maxRetries: 0,
    });
    assert.equal(r.toolCalls.length, 1);
    assert.equal(r.toolCalls[0].toolName, 'get_weather');
    assert.deepEqual(r.toolCalls[0].input, { city: 'Paris' });
  });

  test('a broken Responses stream is an error the SDK can read, not a validation failure', async () => {
    const st = streamText({
      model: openai.responses('gpt-4o'),
      prompt: 'one two',
      headers: { 'x-mock-drop-after': '4' },
      maxRetries: 0,
      onError: () => {},
    });
    let text = '';
    const errors = [];
    for await (const part of st.fullStream) {
      if (part.type === 'text-delta') text += part.text;
      if (part.type === 'error') errors.push(part.error);
    }
    assert.equal(text, 'tok0');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    const e = errors[0];
    const said = JSON.stringify(e) + String(e?.name) + String(e?.message);
    assert.ok(!/TypeValidationError|Type validation failed/.test(said), said);
    assert.match(said, /upstream_failed/);
  });
});
