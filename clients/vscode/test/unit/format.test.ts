import assert from "node:assert/strict";
import { test } from "node:test";
import { displayPath, firstLine, kindIcon, reindexSummary, resultFields, searchTitle, templateFields } from "../../src/common/format";
import type { SearchResult } from "../../src/common/protocol";

const one = [{ name: "shop", uri: "file:///home/u/shop" }];
const two = [...one, { name: "lib", uri: "file:///home/u/lib/" }];

function result(over: Partial<SearchResult> = {}): SearchResult {
  return {
    uri: "file:///home/u/shop/src/config.py",
    range: { start: { line: 9, character: 0 }, end: { line: 41, character: 0 } },
    symbol: "load_config",
    kind: "function",
    language: "python",
    score: 0.834,
    snippet: "\n\ndef load_config(path: str) -> dict:\n    with open(path) as f:\n",
    ...over,
  };
}

test("a result shows symbol, path:line (1-based) with score, and the first code line", () => {
  assert.deepEqual(resultFields(result(), one), {
    label: "$(symbol-function) load_config",
    description: "src/config.py:10  ·  0.83",
    detail: "def load_config(path: str) -> dict:",
  });
});

test("a result without a symbol is labelled by its file name", () => {
  const f = resultFields(result({ symbol: null, kind: "text" }), one);
  assert.equal(f.label, "$(symbol-file) config.py");
});

test("paths are relative to their folder; several roots get the folder name", () => {
  assert.equal(displayPath("file:///home/u/shop/a%20b/c.ts", one), "a b/c.ts");
  assert.equal(displayPath("file:///home/u/lib/x.go", two), "lib/x.go");
  assert.equal(displayPath("file:///home/u/shop/y.go", two), "shop/y.go");
  // A sibling whose name starts like a folder is not inside it.
  assert.equal(displayPath("file:///home/u/shopping/z.py", one), "/home/u/shopping/z.py");
});

test("the innermost folder wins for nested roots", () => {
  const nested = [...one, { name: "api", uri: "file:///home/u/shop/api" }];
  assert.equal(displayPath("file:///home/u/shop/api/h.py", nested), "api/h.py");
});

test("first lines are trimmed and capped", () => {
  assert.equal(firstLine("   \n  x = 1  \n"), "x = 1");
  assert.equal(firstLine(""), "");
  const long = firstLine("y".repeat(300), 10);
  assert.equal(long.length, 10);
  assert.ok(long.endsWith("…"));
});

test("kinds map to codicons, unknown kinds to the file icon", () => {
  assert.equal(kindIcon("Class"), "symbol-class");
  assert.equal(kindIcon("whatever"), "symbol-file");
});

test("templates show language and score; titles count results", () => {
  assert.deepEqual(
    templateFields({ id: "py-retry", name: "HTTP client with retries", language: "python", score: 0.712, description: "requests + backoff" }),
    { label: "HTTP client with retries", description: "python · 0.71", detail: "requests + backoff" },
  );
  assert.equal(searchTitle(1, 12.4, []), "Kenning: 1 result in 12 ms");
  assert.equal(searchTitle(3, 7, ["lang:go"]), "Kenning: 3 results in 7 ms · lang:go");
});

test("the server's notes on a search follow the title", () => {
  assert.equal(
    searchTitle(2, 3, [], ["embeddings 40% complete: results may be missing"]),
    "Kenning: 2 results in 3 ms · embeddings 40% complete: results may be missing",
  );
  assert.equal(
    searchTitle(0, 1, ["glob:web/**"], ["a", "b"]),
    "Kenning: 0 results in 1 ms · glob:web/** · a; b",
  );
});

test("a reindex summary says what was done and what is left", () => {
  const base = { files: 120, chunks: 2300, took_s: 4.24, changed: 0, embedded: 0, pending: 0, cancelled: false };
  assert.equal(reindexSummary(base), "index up to date: 120 files, 2,300 chunks in 4.2 s");
  assert.equal(
    reindexSummary({ ...base, changed: 1, embedded: 12 }),
    "index up to date: 120 files, 2,300 chunks; 1 file re-read, 12 chunks embedded in 4.2 s",
  );
  assert.equal(
    reindexSummary({ ...base, cancelled: true, changed: 3, embedded: 40, pending: 1 }),
    "reindexing cancelled: 120 files, 2,300 chunks; 3 files re-read, 40 chunks embedded; 1 chunk still to embed in 4.2 s",
  );
});
