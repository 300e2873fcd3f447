// End to end against the real `kenning lsp` over stdio, with no VS Code: the
// extension's own server-facing code (settings mapping, KenningServer, query
// parsing, result formatting) talks to the real server, so the wire format is
// checked both ways.
//
// The server command is `python3 -m kenning lsp`, or $KENNING_SERVER_CMD
// (split on spaces). Run with `npm run test:e2e`.
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from "vscode-jsonrpc/node";
import { resultFields } from "../../src/common/format";
import { KenningServer, type StatusAnswer } from "../../src/common/protocol";
import { parseQuery, toSearchArgs } from "../../src/common/query";
import { toServerSettings } from "../../src/common/settings";

// Compiled to out/test/e2e: the extension folder is three levels up.
const EXTENSION = path.join(__dirname, "..", "..", "..");
const WORKSPACE = path.join(EXTENSION, "test", "fixtures", "workspace");
const REPO_SERVER = path.join(EXTENSION, "..", "..", "server");
const INDEX_TIMEOUT_MS = 120_000;

interface Manifest {
  contributes: { configuration: { properties: Record<string, { default: unknown }> } };
}

/** initializationOptions exactly as the extension builds them from package.json's defaults. */
function defaultSettings(): Record<string, unknown> {
  const manifest = JSON.parse(readFileSync(path.join(EXTENSION, "package.json"), "utf8")) as Manifest;
  const props = manifest.contributes.configuration.properties;
  return toServerSettings((key) => props[`kenning.${key}`]?.default);
}

function serverCommand(): { command: string; args: string[] } {
  const custom = process.env.KENNING_SERVER_CMD?.trim();
  const parts = custom ? custom.split(/\s+/) : ["python3", "-m", "kenning", "lsp"];
  return { command: parts[0], args: parts.slice(1) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The promise's value, or `fallback` after `ms`; the timer never outlives the race. */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let child: ChildProcessWithoutNullStreams;
let connection: MessageConnection;
let server: KenningServer;
let home: string;
let stderr = "";
let serverGone: Promise<never>;
let shuttingDown = false;

/** The request's answer, or the reason the server went away first. */
function alive<T>(request: Promise<T>): Promise<T> {
  return shuttingDown ? request : Promise.race([request, serverGone]);
}
const progress: { token: string | number; kind: string }[] = [];
const createdTokens: (string | number)[] = [];
const logMessages: string[] = [];
const settings = defaultSettings();
const workspaceUri = pathToFileURL(WORKSPACE).toString();

before(async () => {
  home = mkdtempSync(path.join(tmpdir(), "kenning-e2e-"));
  const { command, args } = serverCommand();
  // Test this checkout's server, not whatever kenning is installed elsewhere.
  const pythonPath = [existsSync(REPO_SERVER) ? REPO_SERVER : "", process.env.PYTHONPATH ?? ""].filter(Boolean).join(path.delimiter);
  child = spawn(command, args, {
    cwd: WORKSPACE,
    env: { ...process.env, KENNING_HOME: home, HF_HUB_OFFLINE: "1", PYTHONPATH: pythonPath },
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  // A server that dies or never starts fails the run with its own words,
  // instead of leaving requests pending forever.
  serverGone = new Promise<never>((_resolve, reject) => {
    child.once("error", (error) => reject(new Error(`could not start ${command}: ${error.message}`)));
    child.once("exit", (code, signal) =>
      reject(new Error(`the server exited (code ${code}, signal ${signal}); stderr:\n${stderr.slice(-4000)}`)),
    );
  });
  serverGone.catch(() => undefined);
  connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  connection.onRequest("window/workDoneProgress/create", (params: { token: string | number }) => {
    createdTokens.push(params.token);
    return null;
  });
  connection.onRequest("workspace/configuration", (params: { items: { section?: string }[] }) =>
    params.items.map((item) => (item.section === "kenning" ? settings : null)),
  );
  connection.onRequest("client/registerCapability", () => null);
  connection.onRequest("client/unregisterCapability", () => null);
  connection.onRequest("workspace/applyEdit", () => ({ applied: false }));
  connection.onNotification("window/logMessage", (p: { message: string }) => logMessages.push(p.message));
  connection.onNotification("window/showMessage", (p: { message: string }) => logMessages.push(p.message));
  connection.onNotification("textDocument/publishDiagnostics", () => undefined);
  connection.onUnhandledProgress((p) => {
    const value = p.value as { kind?: string };
    progress.push({ token: p.token, kind: value.kind ?? "?" });
  });
  connection.listen();
  server = new KenningServer(connection);

  const init = await alive(connection.sendRequest<{ capabilities: { executeCommandProvider?: { commands: string[] } } }>(
    "initialize",
    {
      processId: process.pid,
      rootUri: workspaceUri,
      workspaceFolders: [{ uri: workspaceUri, name: "workspace" }],
      initializationOptions: settings,
      capabilities: {
        window: { workDoneProgress: true },
        workspace: { configuration: true, workspaceFolders: true, applyEdit: true, symbol: {} },
        textDocument: { synchronization: { didSave: true }, codeAction: {} },
      },
    },
  ));
  const commands = init.capabilities.executeCommandProvider?.commands ?? [];
  for (const id of ["kenning.search", "kenning.similar", "kenning.matchTemplates", "kenning.applyTemplate", "kenning.reindex", "kenning.status"]) {
    assert.ok(commands.includes(id), `the server announces ${id} (announced: ${commands.join(", ")})`);
  }
  await connection.sendNotification("initialized", {});
});

after(async () => {
  shuttingDown = true;
  try {
    await within(connection.sendRequest("shutdown"), 10_000, undefined);
    await connection.sendNotification("exit");
  } catch {
    // The exit below tells whether the server went away.
  }
  const exited = await within(
    new Promise<boolean>((resolve) => (child.exitCode !== null ? resolve(true) : child.once("exit", () => resolve(true)))),
    10_000,
    false,
  );
  if (!exited) {
    child.kill();
  }
  connection.dispose();
  rmSync(home, { recursive: true, force: true });
  assert.ok(exited, "the server exits after shutdown/exit");
});

async function waitForIndex(): Promise<StatusAnswer> {
  const deadline = Date.now() + INDEX_TIMEOUT_MS;
  let last: StatusAnswer | undefined;
  while (Date.now() < deadline) {
    last = await alive(server.status());
    if (last.pending === 0 && last.chunks > 0) {
      return last;
    }
    await sleep(500);
  }
  assert.fail(`index not ready after ${INDEX_TIMEOUT_MS / 1000} s: ${JSON.stringify(last)}\nserver stderr:\n${stderr.slice(-4000)}`);
}

test("the index builds with progress and kenning.status reports it", async () => {
  const status = await waitForIndex();
  assert.ok(status.files >= 3, `3 source files indexed, status says ${status.files}`);
  assert.ok(status.chunks >= 6, `at least the 6 functions, status says ${status.chunks} chunks`);
  assert.equal(typeof status.model, "string");
  assert.ok(status.model.length > 0);
  assert.ok(["cpu", "cuda"].includes(status.device), `device ${status.device}`);
  // $/progress only ever uses tokens the client accepted.
  assert.ok(createdTokens.length > 0, "the server asked for a progress token (window/workDoneProgress/create)");
  for (const p of progress) {
    assert.ok(createdTokens.includes(p.token), `progress on unknown token ${String(p.token)}`);
  }
  assert.ok(progress.some((p) => p.kind === "begin"), "a progress begin was sent");
  assert.ok(progress.some((p) => p.kind === "end"), "a progress end was sent");
});

test("searching 'read a json config file' puts load_config first", async () => {
  await waitForIndex();
  const args = toSearchArgs(parseQuery("read a json config file"), 5);
  const answer = await alive(server.search(args));
  assert.ok(answer.results.length > 0, "some results");
  assert.ok(answer.results.length <= 5, "k is honoured");
  assert.ok(answer.took_ms >= 0);
  for (const r of answer.results) {
    assert.ok(r.uri.startsWith(workspaceUri + "/"), `result inside the workspace: ${r.uri}`);
    assert.ok(r.range.start.line <= r.range.end.line);
    assert.ok(r.score >= -1 && r.score <= 1 + 1e-9, `score ${r.score}`);
    assert.ok(r.snippet.length > 0);
  }
  const scores = answer.results.map((r) => r.score);
  assert.deepEqual(scores, [...scores].sort((a, b) => b - a), "best first");
  const top = answer.results[0];
  assert.ok(top.uri.endsWith("/src/config_loader.py"), `top result is the config loader, got ${top.uri}`);
  assert.match(top.symbol ?? "", /load_config$/);
  assert.equal(top.language, "python");
  assert.equal(top.kind, "function");
  // LSP lines are 0-based: `def load_config` is line 9 of the file (1-based).
  assert.ok(top.range.start.line <= 8 && top.range.end.line >= 8, `range ${JSON.stringify(top.range)} covers the def`);
  const fields = resultFields(top, [{ name: "workspace", uri: workspaceUri }]);
  assert.match(fields.label, /load_config$/);
  assert.match(fields.description, /^src\/config_loader\.py:\d+/);
});

test("the lang and glob filters narrow the search", async () => {
  await waitForIndex();
  const go = await alive(server.search(toSearchArgs(parseQuery("lang:go sort users by age"), 5)));
  assert.ok(go.results.length > 0);
  assert.ok(go.results.every((r) => r.language === "go"), "only Go results");
  assert.match(go.results[0].symbol ?? "", /SortUsersByAge$/);
  const web = await alive(server.search(toSearchArgs(parseQuery("glob:web/** retry an http request"), 5)));
  assert.ok(web.results.length > 0);
  assert.ok(web.results.every((r) => r.uri.includes("/web/")), "only files under web/");
  assert.match(web.results[0].symbol ?? "", /fetchWithRetry$/);
});

test("similar code and template matches have the contract's shapes", async () => {
  await waitForIndex();
  const uri = pathToFileURL(path.join(WORKSPACE, "web", "http_retry.ts")).toString();
  const similar = await alive(server.similar({ uri, position: { line: 5, character: 10 } }, 3));
  assert.ok(similar.results.length <= 3);
  assert.ok(!similar.results.some((r) => r.uri === uri && r.range.start.line <= 5 && r.range.end.line >= 5), "the chunk itself is left out");
  const templates = await alive(server.matchTemplates({ uri, position: { line: 5, character: 10 } }));
  for (const m of templates.matches) {
    assert.ok(m.id.length > 0 && m.name.length > 0);
  }
});

test("workspace/symbol answers semantically", async () => {
  await waitForIndex();
  const symbols = await alive(
    connection.sendRequest<{ name: string; location: { uri: string } }[] | null>("workspace/symbol", {
      query: "order people from youngest to oldest",
    }),
  );
  assert.ok(Array.isArray(symbols) && symbols.length > 0, "symbols returned");
  assert.ok(
    symbols.slice(0, 3).some((s) => s.name.endsWith("SortUsersByAge")),
    `SortUsersByAge in the top 3, got ${symbols.slice(0, 3).map((s) => s.name).join(", ")}`,
  );
});

test("bad input gets an error and the server goes on serving", async () => {
  await assert.rejects(
    alive(connection.sendRequest("workspace/executeCommand", { command: "kenning.noSuchCommand", arguments: [{}] })),
    (e: Error) => !/the server exited/.test(e.message),
  );
  await assert.rejects(
    alive(connection.sendRequest("workspace/executeCommand", { command: "kenning.search", arguments: [{ query: 42 }] })),
    (e: Error) => !/the server exited/.test(e.message),
  );
  const status = await alive(server.status());
  assert.equal(status.pending, 0);
});
