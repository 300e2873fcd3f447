import assert from "node:assert/strict";
import { test } from "node:test";
import type { CancellationToken } from "vscode-jsonrpc";
import { KenningServer, ProtocolError, targetFromArgs, type Requester } from "../../src/common/protocol";

class FakeRequester implements Requester {
  sent: { method: string; params: unknown; token?: CancellationToken }[] = [];
  constructor(private readonly answer: (params: { command: string; arguments: unknown[] }) => unknown) {}
  sendRequest<R>(method: string, params: unknown, token?: CancellationToken): Promise<R> {
    this.sent.push({ method, params, token });
    return Promise.resolve(this.answer(params as { command: string; arguments: unknown[] }) as R);
  }
}

const hit = {
  uri: "file:///w/config.py",
  range: { start: { line: 2, character: 0 }, end: { line: 9, character: 0 } },
  symbol: "load_config",
  kind: "function",
  language: "python",
  score: 0.8,
  snippet: "def load_config():",
};

test("search is one executeCommand with the arguments as a single object", async () => {
  const req = new FakeRequester(() => ({ results: [hit], took_ms: 3.5 }));
  const answer = await new KenningServer(req).search({ query: "read json", k: 5, lang: "python" });
  assert.deepEqual(req.sent[0].method, "workspace/executeCommand");
  assert.deepEqual(req.sent[0].params, {
    command: "kenning.search",
    arguments: [{ query: "read json", k: 5, lang: "python" }],
  });
  assert.deepEqual(answer, { results: [hit], took_ms: 3.5, notes: [] });
});

test("the server's extra search fields are read: notes kept, path and mode dropped", async () => {
  const req = new FakeRequester(() => ({
    query: "read json",
    results: [{ ...hit, path: "config.py" }],
    took_ms: 2,
    mode: "lexical",
    complete: 0,
    notes: ["no embedding model loaded: lexical results only", 7],
  }));
  const answer = await new KenningServer(req).search({ query: "read json" });
  assert.deepEqual(answer, { results: [hit], took_ms: 2, notes: ["no embedding model loaded: lexical results only"] });
});

test("similar sends the target with k; templates send the target alone", async () => {
  const req = new FakeRequester((p) =>
    p.command === "kenning.similar" ? { results: [], took_ms: 1 } : { matches: [{ id: "t1", name: "T", language: "go", score: 0.5, description: "d" }] },
  );
  const server = new KenningServer(req);
  const target = { uri: "file:///w/a.go", position: { line: 3, character: 1 } };
  await server.similar(target, 7);
  const matches = await server.matchTemplates(target);
  assert.deepEqual(req.sent.map((s) => s.params), [
    { command: "kenning.similar", arguments: [{ ...target, k: 7 }] },
    { command: "kenning.matchTemplates", arguments: [target] },
  ]);
  assert.equal(matches.matches[0].id, "t1");
});

test("applyTemplate and status send the contract's arguments", async () => {
  const req = new FakeRequester((p) =>
    p.command === "kenning.status" ? { files: 3, chunks: 9, embedded: 8, pending: 1, model: "m", device: "cpu", metrics: {}, folders: [] } : null,
  );
  const server = new KenningServer(req);
  await server.applyTemplate("file:///w/a.py", { line: 1, character: 0 }, "python-http-client-retry");
  const status = await server.status();
  assert.deepEqual(req.sent[0].params, {
    command: "kenning.applyTemplate",
    arguments: [{ uri: "file:///w/a.py", position: { line: 1, character: 0 }, templateId: "python-http-client-retry" }],
  });
  assert.deepEqual(req.sent[1].params, { command: "kenning.status", arguments: [{}] });
  assert.equal(status.pending, 1);
});

test("aborting the signal cancels the request's token", async () => {
  const req = new FakeRequester(() => ({ results: [], took_ms: 0 }));
  const controller = new AbortController();
  const pending = new KenningServer(req).search({ query: "x" }, controller.signal);
  const token = req.sent[0].token;
  assert.ok(token !== undefined);
  assert.equal(token.isCancellationRequested, false);
  controller.abort();
  assert.equal(token.isCancellationRequested, true);
  await pending;
});

test("answers of the wrong shape fail with a clear message", async () => {
  const bad = (answer: unknown) => new KenningServer(new FakeRequester(() => answer));
  await assert.rejects(bad({ hits: [] }).search({ query: "x" }), (e: Error) => e instanceof ProtocolError && /expected \{results/.test(e.message));
  await assert.rejects(bad({ results: [{ ...hit, range: { start: 1 } }] }).search({ query: "x" }), /expected an LSP range/);
  await assert.rejects(bad({ files: "many" }).status(), /expected a number in "files"/);
  await assert.rejects(bad(null).reindex(), /kenning.reindex: expected an object/);
});

test("status reads the server's nulls, model error, running job and folders", async () => {
  const answer = {
    files: 3, chunks: 9, embedded: 0, pending: 9, skipped: 2, model: null, device: null,
    model_error: "no model at /m",
    metrics: { index_bytes: 4096, queries: 0, query_ms_p95: null, indexing: "refresh:/w", queued: [], watching: "watchfiles" },
    folders: [
      { root: "/w", index_path: "/h/x.db", files: 3, chunks: 9, embedded: 0, pending: 9, metrics: {} },
      { root: "/v", error: "/v: the index could not be opened (locked)" },
    ],
  };
  const status = await new KenningServer(new FakeRequester(() => answer)).status();
  assert.deepEqual(status, {
    files: 3, chunks: 9, embedded: 0, pending: 9, skipped: 2, model: "", device: "",
    modelError: "no model at /m",
    indexing: "refresh:/w",
    metrics: answer.metrics,
    folders: [
      { root: "/w", files: 3, chunks: 9, pending: 9 },
      { root: "/v", files: 0, chunks: 0, pending: 0, error: "/v: the index could not be opened (locked)" },
    ],
  });
});

test("reindex reads the whole answer and can be cancelled", async () => {
  const req = new FakeRequester(() => ({ files: 3, chunks: 9, changed: 1, embedded: 4, pending: 2, cancelled: true, took_s: 0.5 }));
  const controller = new AbortController();
  const pending = new KenningServer(req).reindex(controller.signal);
  assert.deepEqual(req.sent[0].params, { command: "kenning.reindex", arguments: [{}] });
  controller.abort();
  assert.equal(req.sent[0].token?.isCancellationRequested, true);
  assert.deepEqual(await pending, { files: 3, chunks: 9, changed: 1, embedded: 4, pending: 2, cancelled: true, took_s: 0.5 });
});

test("the target of the server's Find similar code action is read from its arguments", () => {
  const position = { line: 5, character: 2 };
  const range = { start: { line: 1, character: 0 }, end: { line: 4, character: 3 } };
  assert.deepEqual(targetFromArgs([{ uri: "file:///w/a.ts", position }]), { uri: "file:///w/a.ts", position });
  assert.deepEqual(targetFromArgs([{ uri: "file:///w/a.ts", range }]), { uri: "file:///w/a.ts", range });
  assert.equal(targetFromArgs([]), undefined);
  assert.equal(targetFromArgs(undefined), undefined);
  assert.equal(targetFromArgs([{ uri: "file:///w/a.ts" }]), undefined);
  assert.equal(targetFromArgs([{ uri: "file:///w/a.ts", position: { line: "5" } }]), undefined);
  assert.equal(targetFromArgs([{ uri: "file:///w/a.ts", position }, {}]), undefined);
});

test("template matches in the CLI's shape (languages, a list) are read too", async () => {
  const req = new FakeRequester(() => ({
    matches: [{ id: "ts-retry", name: "fetch with retries", languages: ["typescript", "javascript"], score: 0.85, description: "d", why: "w" }],
  }));
  const answer = await new KenningServer(req).matchTemplates({ uri: "file:///w/a.ts", position: { line: 0, character: 0 } });
  assert.deepEqual(answer.matches, [{ id: "ts-retry", name: "fetch with retries", language: "typescript, javascript", score: 0.85, description: "d" }]);
});
