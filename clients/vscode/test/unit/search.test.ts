// The search command end to end inside a mocked VS Code: typing, debouncing,
// stale answers, preview and accept.
import "./use-vscode-mock";
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { Logger } from "../../src/common/log";
import { KenningServer, type Requester, type SearchArgs } from "../../src/common/protocol";
import { LAST_QUERY_KEY, searchCode } from "../../src/search";
import { Memento, recorded, type FakeQuickPick } from "./vscode-mock";
import type * as vscode from "vscode";

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hit(symbol: string, line: number) {
  return {
    uri: `file:///home/u/shop/src/${symbol}.py`,
    range: { start: { line, character: 0 }, end: { line: line + 5, character: 0 } },
    symbol,
    kind: "function",
    language: "python",
    score: 0.9,
    snippet: `def ${symbol}():\n    pass`,
  };
}

/** A server whose answers the test releases one by one. */
class Server implements Requester {
  queries: SearchArgs[] = [];
  release: ((answer: unknown) => void)[] = [];
  sendRequest<R>(_method: string, params: unknown): Promise<R> {
    this.queries.push((params as { arguments: SearchArgs[] }).arguments[0]);
    return new Promise<R>((resolve) => this.release.push((a) => resolve(a as R)));
  }
}

function open(server: Server, memento = new Memento()) {
  const done = searchCode({
    server: () => new KenningServer(server),
    memento: memento as unknown as vscode.Memento,
    log: new Logger(() => undefined),
    k: () => 7,
    debounceMs: 5,
  });
  const pick = recorded.quickPicks.at(-1) as FakeQuickPick;
  return { done, pick, memento };
}

beforeEach(() => recorded.reset());

test("typing searches once per pause, with k and filters, and shows the newest answer", async () => {
  const server = new Server();
  const { pick } = open(server);
  assert.equal(pick.visible, true);
  assert.equal(pick.sortByLabel, false, "the server's ranking is kept");
  pick.type("r");
  pick.type("re");
  pick.type("lang:python read json");
  await tick(20);
  assert.deepEqual(server.queries, [{ query: "read json", k: 7, lang: "python" }]);
  assert.equal(pick.busy, true);
  server.release[0]({ results: [hit("load_config", 9), hit("parse", 1)], took_ms: 4 });
  await tick();
  assert.equal(pick.busy, false);
  assert.deepEqual(
    pick.items.map((i) => [i.label, i.description, i.detail, i.alwaysShow]),
    [
      ["$(symbol-function) load_config", "src/load_config.py:10  ·  0.90", "def load_config():", true],
      ["$(symbol-function) parse", "src/parse.py:2  ·  0.90", "def parse():", true],
    ],
  );
  assert.equal(pick.title, "Kenning: 2 results in 4 ms · lang:python");
});

test("a slow answer to an older query never replaces a newer one", async () => {
  const server = new Server();
  const { pick } = open(server);
  pick.type("sort");
  await tick(20);
  pick.type("sort users by age");
  await tick(20);
  assert.equal(server.queries.length, 2);
  server.release[1]({ results: [hit("sort_users", 3)], took_ms: 2 });
  await tick();
  server.release[0]({ results: [hit("stale", 1)], took_ms: 90 });
  await tick();
  assert.deepEqual(pick.items.map((i) => i.label), ["$(symbol-function) sort_users"]);
});

test("the active item is previewed without focus; accept opens it and remembers the query", async () => {
  const server = new Server();
  const { pick, memento, done } = open(server);
  pick.type("retry http");
  await tick(20);
  server.release[0]({ results: [hit("fetch_with_retry", 20)], took_ms: 1 });
  await tick();
  pick.activeItems = [pick.items[0]];
  pick.activeEmitter.fire(pick.activeItems);
  assert.equal(recorded.shown.length, 1);
  assert.equal(recorded.shown[0].uri, "file:///home/u/shop/src/fetch_with_retry.py");
  assert.equal(recorded.shown[0].options.preview, true);
  assert.equal(recorded.shown[0].options.preserveFocus, true);
  assert.equal(recorded.shown[0].options.selection?.startLine, 20);
  pick.acceptEmitter.fire();
  await done;
  assert.equal(pick.visible, false);
  assert.equal(pick.disposed, true);
  assert.equal(recorded.shown[1].options.preview, false);
  assert.equal(memento.get(LAST_QUERY_KEY, ""), "retry http");
});

test("the remembered query is shown and run at once", async () => {
  const server = new Server();
  const memento = new Memento();
  await memento.update(LAST_QUERY_KEY, "glob:src/** read config");
  const { pick } = open(server, memento);
  assert.equal(pick.value, "glob:src/** read config");
  await tick();
  assert.deepEqual(server.queries, [{ query: "read config", k: 7, glob: ["src/**"] }]);
});

test("clearing the box clears the results without a request", async () => {
  const server = new Server();
  const { pick } = open(server);
  pick.type("lang:go ");
  await tick(20);
  assert.deepEqual(server.queries, []);
  assert.deepEqual(pick.items, []);
});

test("without a running server the user is told so", async () => {
  await searchCode({
    server: () => undefined,
    memento: new Memento() as unknown as vscode.Memento,
    log: new Logger(() => undefined),
    k: () => undefined,
  });
  assert.deepEqual(recorded.warnings, ["Kenning: the server is not running."]);
  assert.equal(recorded.quickPicks.length, 0);
});
