// LangChain (@langchain/openai's ChatOpenAI) pointed at sluice: invoke and
// stream on chat completions with usage, a bound tool, the Responses API,
// and a Responses stream cut mid-answer raised as the upstream's error.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ChatOpenAI } from '@langchain/openai';

import { oneKeyConf, start } from './harness.mjs';

const KEY = 'sk-langchain-test-key-01';

const conf = oneKeyConf(KEY);

describe('LangChain through sluice', () => {
  let s;
  const model = (extra = {}) => new ChatOpenAI({
    model: 'gpt-4o', apiKey: KEY, configuration: { baseURL: s.baseURL }, maxRetries: 0, ...extra,
  });

  before(async () => { s = await start(conf); });
  after(async () => { await s.stop(); });

  test('invoke and stream, with usage', async () => {
    const r = await model().invoke('one two three');
    assert.equal(r.content, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    assert.equal(r.usage_metadata.output_tokens, 8);
    assert.equal(r.usage_metadata.input_tokens, 3);
    let text = '';
    for await (const c of await model().stream('one two')) text += c.content;
    assert.equal(text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
  });

  test('a bound tool is called', async () => {
    const llm = model().bindTools([{
      type: 'function',
      function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
    }]);
    const r = await llm.invoke('weather in Paris?');
    assert.deepEqual(r.tool_calls.map((c) => [c.name, c.args]), [['get_weather', { city: 'Paris' }]]);
  });

  test('the Responses API, whole and cut mid-stream', async () => {
    const llm = model({ useResponsesApi: true });
    const r = await llm.invoke('one two');
    assert.equal(r.content[0].text, 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
    const err = await (async () => {
      for await (const c of await llm.stream('x', { headers: { 'x-mock-drop-after': '4' } })) void c;
    })().catch((e) => e);
    assert.ok(err instanceof Error, String(err));
    assert.match(err.message, /upstream request failed/i);
  });
});
