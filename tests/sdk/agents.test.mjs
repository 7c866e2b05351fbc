// The OpenAI Agents SDK (@openai/agents-core + @openai/agents-openai, the 0.3
// line: the last that takes zod 3 and openai 6 and runs on Debian's Node 18),
// pointed at sluice: an agent that calls a tool and answers with its result,
// on the Responses API and on chat completions, streamed, and what a run sees
// when the upstream cuts its stream or sluice refuses a call.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Agent, Runner, setTracingDisabled, tool } from '@openai/agents-core';
import { OpenAIProvider } from '@openai/agents-openai';
import OpenAI from 'openai';
import { z } from 'zod';

import { oneKeyConf, start } from './harness.mjs';

const KEY = 'sk-agents-test-key-0001';
const LIMITED = 'sk-agents-limited-key-01';

const conf = oneKeyConf(KEY, `
[key limited]
key = ${LIMITED}
rpm = 1
`);

const ANSWER = 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7';

setTracingDisabled(true);

describe('the OpenAI Agents SDK through sluice', () => {
  let s;
  const runner = ({ key = KEY, useResponses = true, headers = {} } = {}) => new Runner({
    modelProvider: new OpenAIProvider({
      useResponses,
      openAIClient: new OpenAI({ baseURL: s.baseURL, apiKey: key, maxRetries: 0, defaultHeaders: headers }),
    }),
    tracingDisabled: true,
  });
  const weatherAgent = (calls) => new Agent({
    name: 'weather',
    instructions: 'Answer with the weather.',
    model: 'gpt-4o',
    tools: [tool({
      name: 'get_weather',
      description: 'the weather in a city',
      parameters: z.object({ city: z.string() }),
      execute: async ({ city }) => { calls.push(city); return `sunny in ${city}`; },
    })],
  });

  before(async () => { s = await start(conf); });
  after(async () => { await s.stop(); });

  for (const useResponses of [true, false]) {
    test(`a run calls the tool and answers (${useResponses ? 'Responses API' : 'chat completions'})`, async () => {
      const calls = [];
      const r = await runner({ useResponses }).run(weatherAgent(calls), 'weather in Paris?');
      assert.deepEqual(calls, ['Paris']);
      assert.equal(r.finalOutput, ANSWER);
      // Two model calls through sluice: the tool call, then the answer.
      assert.equal(r.state._context.usage.requests, 2);
      assert.equal(r.state._context.usage.outputTokens > 0, true);
      const toolItems = r.newItems.filter((i) => i.type === 'tool_call_output_item');
      assert.equal(toolItems.length, 1);
      assert.equal(toolItems[0].output, 'sunny in Paris');
    });
  }

  test('a streamed run', async () => {
    const calls = [];
    const r = await runner().run(weatherAgent(calls), 'weather in Paris?', { stream: true });
    let text = '';
    for await (const t of r.toTextStream()) text += t;
    await r.completed;
    assert.deepEqual(calls, ['Paris']);
    assert.equal(text, ANSWER);
    assert.equal(r.finalOutput, ANSWER);
  });

  test('a stream cut mid-answer fails the run with the upstream error', async () => {
    const agent = new Agent({ name: 'plain', instructions: 'Answer.', model: 'gpt-4o' });
    const r = await runner({ headers: { 'x-mock-drop-after': '4' } }).run(agent, 'one two', { stream: true });
    const err = await (async () => {
      for await (const t of r.toTextStream()) void t;
      await r.completed;
      return r.error;
    })().catch((e) => e);
    assert.ok(err instanceof Error, `the run ended without an error: ${err}`);
    assert.match(err.message, /upstream request failed/i);
  });

  test("sluice's 429 reaches the run as the SDK's RateLimitError", async () => {
    const agent = new Agent({ name: 'plain', instructions: 'Answer.', model: 'gpt-4o' });
    const first = await runner({ key: LIMITED }).run(agent, 'one');
    assert.equal(first.finalOutput, ANSWER);
    const err = await runner({ key: LIMITED }).run(agent, 'two').catch((e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.ok(Number(err.headers.get('retry-after')) >= 1);
  });
});
