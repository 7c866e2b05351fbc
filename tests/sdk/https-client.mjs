// Run by https.test.mjs in a node of its own, started with NODE_EXTRA_CA_CERTS
// naming the test CA, so the SDK's own fetch trusts sluice's certificate the
// way a user's process would. Prints what it saw as one JSON line.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const hello = [{ role: 'user', content: 'Say hello' }];
const out = {};
const r = await client.chat.completions.create({ model: 'gpt-4o', messages: hello });
out.content = r.choices[0].message.content;
const stream = await client.chat.completions.create({
  model: 'gpt-4o', messages: hello, stream: true, stream_options: { include_usage: true },
});
out.streamed = '';
for await (const chunk of stream) {
  out.streamed += chunk.choices[0]?.delta?.content ?? '';
  if (chunk.usage) out.usage = chunk.usage.completion_tokens;
}
try {
  await client.chat.completions.create({ model: 'gpt-4o', messages: hello });
} catch (e) {
  out.second = { status: e.status, type: e.error?.type, name: e.constructor.name };
}
const bad = new OpenAI({ baseURL, apiKey: 'sk-not-a-key', maxRetries: 0 });
try {
  await bad.models.list();
} catch (e) {
  out.bad = { status: e.status, name: e.constructor.name };
}
console.log(JSON.stringify(out));
