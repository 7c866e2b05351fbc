// The Node.js examples of README.md and docs/operations.md, run as a reader
// would paste them: each ```js block, pointed at a sluice of the test's own
// (its port and key put where the example has the quick start's), must print
// the mock's answer through the official SDK.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { UPSTREAM_KEY, start } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const KEY = 'sk-sluice-demo-key';

function jsBlocks(page) {
  const text = readFileSync(join(root, page), 'utf8');
  return [...text.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
}

describe('the docs\' Node.js examples', () => {
  let s;
  before(async () => {
    s = await start((mockUrl) => `
[server]
listen = 127.0.0.1:{port}

[backend mock]
url = ${mockUrl}
api_key = ${UPSTREAM_KEY}

[key demo]
key = ${KEY}
`);
  });
  after(async () => { if (s) await s.stop(); });

  for (const page of ['README.md', 'docs/operations.md']) {
    test(`${page}: every js block runs against sluice`, () => {
      const blocks = jsBlocks(page);
      assert.ok(blocks.length >= 1, `${page} has no js example`);
      blocks.forEach((code, i) => {
        assert.match(code, /http:\/\/127\.0\.0\.1:8080\/v1/);
        // Next to node_modules, so that `import ... from 'openai'` resolves as in a project.
        const file = join(here, `.example-${page.replace(/\W/g, '_')}-${i}.mjs`);
        writeFileSync(file, code.replaceAll('http://127.0.0.1:8080/v1', s.baseURL));
        try {
          const out = execFileSync(process.execPath, [file], {
            encoding: 'utf8', env: { ...process.env, SLUICE_KEY: KEY, http_proxy: '', https_proxy: '' },
          });
          assert.equal(out.trim(), 'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7');
        } finally {
          rmSync(file, { force: true });
        }
      });
    });
  }
});
