// End to end against the real `kenning lsp` over stdio, with no VS Code: the
// extension's own server-facing code (settings mapping, KenningServer, query
// parsing, result formatting) talks to the real server, so the wire format is
// checked both ways.
//
// The server command is `python3 -m kenning lsp` with this checkout's
// `server/` first on PYTHONPATH, or $KENNING_SERVER_CMD (split on spaces).
// Run with `npm run test:e2e`. The client capabilities below are the ones
// VS Code's language client announces that matter to the server (progress,
// configuration pull, dynamic file watching).
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from "vscode-jsonrpc/node";
import { resultFields } from "../../src/common/format";
import { SERVER_COMMANDS } from "../../src/common/ids";
import { checkSearchAnswer, KenningServer, targetFromArgs, type StatusAnswer } from "../../src/common/protocol";
import { parseQuery, toSearchArgs } from "../../src/common/query";
import { toServerSettings } from "../../src/common/settings";
import { singleTextEdit } from "../../src/common/snippet";
import { stateFromNotification, stateFromProgress, stateFromStatus, type IndexState } from "../../src/common/status";

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
let announced: string[] = [];
let shuttingDown = false;

/** The request's answer, or the reason the server went away first. */
function alive<T>(request: Promise<T>): Promise<T> {
  return shuttingDown ? request : Promise.race([request, serverGone]);
}
interface ProgressValue {
  kind: string;
  title?: string;
  message?: string;
  percentage?: number;
}
const progress: { token: string | number; value: ProgressValue }[] = [];
const registrations: { method: string; registerOptions?: unknown }[] = [];
let configurationPulls = 0;
const appliedEdits: unknown[] = [];
const createdTokens: (string | number)[] = [];
const logMessages: string[] = [];
// Every kenning/status notification, as sent.
const statusNotes: unknown[] = [];
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
  connection.onNotification("kenning/status", (params: unknown) => statusNotes.push(params));
  connection.onRequest("workspace/configuration", (params: { items: { section?: string }[] }) => {
    configurationPulls++;
    return params.items.map((item) => (item.section === "kenning" ? settings : null));
  });
  connection.onRequest("client/registerCapability", (params: { registrations: { method: string; registerOptions?: unknown }[] }) => {
    registrations.push(...params.registrations);
    return null;
  });
  connection.onRequest("client/unregisterCapability", () => null);
  connection.onRequest("workspace/applyEdit", (params: { edit: unknown }) => {
    // Recorded, not applied: the fixture stays as it is.
    appliedEdits.push(params.edit);
    return { applied: true };
  });
  connection.onNotification("window/logMessage", (p: { message: string }) => logMessages.push(p.message));
  connection.onNotification("window/showMessage", (p: { message: string }) => logMessages.push(p.message));
  connection.onNotification("textDocument/publishDiagnostics", () => undefined);
  connection.onUnhandledProgress((p) => progress.push({ token: p.token, value: p.value as ProgressValue }));
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
        workspace: {
          configuration: true,
          workspaceFolders: true,
          applyEdit: true,
          symbol: {},
          didChangeWatchedFiles: { dynamicRegistration: true },
          didChangeConfiguration: { dynamicRegistration: true },
        },
        textDocument: { synchronization: { didSave: true }, codeAction: {} },
      },
    },
  ));
  announced = init.capabilities.executeCommandProvider?.commands ?? [];
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

/** The index state the status bar would show, from the real `kenning.status`. */
async function indexState(): Promise<{ status: StatusAnswer; state: IndexState }> {
  const status = await alive(server.status());
  return { status, state: stateFromStatus(status) };
}

async function waitForIndex(): Promise<StatusAnswer> {
  const deadline = Date.now() + INDEX_TIMEOUT_MS;
  let last: StatusAnswer | undefined;
  while (Date.now() < deadline) {
    const { status, state } = await indexState();
    last = status;
    if (state.kind === "ready" && status.chunks > 0) {
      return status;
    }
    await sleep(250);
  }
  assert.fail(`index not ready after ${INDEX_TIMEOUT_MS / 1000} s: ${JSON.stringify(last)}\nserver stderr:\n${stderr.slice(-4000)}`);
}

/** Polls `check` until it returns a value, or fails with `what`. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    await sleep(250);
  }
  assert.fail(`${what} within ${ms / 1000} s\nserver stderr:\n${stderr.slice(-4000)}`);
}

const settingsWarnings = (): string[] => logMessages.filter((m) => /settings/i.test(m) && /unknown|expected|must/i.test(m));

// Its own test, so a missing command fails one test and not every one.
test("the server announces every contract command", () => {
  const missing = Object.values(SERVER_COMMANDS).filter((id) => !announced.includes(id));
  assert.deepEqual(missing, [], `commands the server does not announce (it announces ${announced.join(", ")})`);
});

test("the index builds with progress and kenning.status reports it as the extension reads it", async () => {
  const status = await waitForIndex();
  assert.ok(status.files >= 3, `3 source files indexed, status says ${status.files}`);
  assert.ok(status.chunks >= 6, `at least the 6 functions, status says ${status.chunks} chunks`);
  assert.equal(status.pending, 0);
  assert.equal(status.embedded, status.chunks, "every chunk embedded by the real model");
  assert.equal(status.modelError, undefined, `the default model loads: ${status.modelError}`);
  assert.ok(status.model.length > 0, "the model id is reported");
  assert.ok(["cpu", "cuda"].includes(status.device), `device ${status.device}`);
  assert.equal(status.indexing, undefined, "no job runs once ready");
  assert.equal(status.folders.length, 1);
  assert.equal(status.folders[0].error, undefined);
  assert.equal(path.resolve(status.folders[0].root), path.resolve(WORKSPACE));
  // The server said so itself: the extension's fold of its kenning/status
  // notifications ends where the answer is, with no request of the client's.
  const told = await eventually("a kenning/status notification of the finished index", () => {
    let folded: IndexState = { kind: "starting" };
    for (const note of statusNotes) {
      folded = stateFromNotification(note, folded, false, (e) => assert.fail(String(e)));
    }
    return Promise.resolve(folded.kind === "ready" && folded.chunks === status.chunks ? folded : undefined);
  });
  assert.equal(told.files, status.files);
  // The extension leaves file watching to the server's dynamic registration.
  assert.equal(status.metrics?.watching, "client", "the server asked the client to watch files");
  assert.ok(
    registrations.some((r) => r.method === "workspace/didChangeWatchedFiles"),
    `a workspace/didChangeWatchedFiles registration (got ${registrations.map((r) => r.method).join(", ")})`,
  );

  // $/progress only ever uses tokens the client accepted, and the extension's
  // fold of it ends in a finished bar.
  assert.ok(createdTokens.length > 0, "the server asked for a progress token (window/workDoneProgress/create)");
  for (const p of progress) {
    assert.ok(createdTokens.includes(p.token), `progress on unknown token ${String(p.token)}`);
  }
  const first = progress.filter((p) => p.token === createdTokens[0]).map((p) => p.value);
  assert.equal(first[0]?.kind, "begin", "the first bar begins");
  assert.ok((first[0].title ?? "").length > 0, "the bar has a title");
  assert.equal(first[first.length - 1]?.kind, "end", "the first bar ends");
  const percentages = first.map((v) => v.percentage).filter((n): n is number => n !== undefined);
  assert.deepEqual(percentages, [...percentages].sort((a, b) => a - b), "the bar only grows");
  assert.ok(percentages.every((n) => n >= 0 && n <= 100));
  let state: IndexState = { kind: "starting" };
  for (const value of first.slice(0, -1)) {
    state = stateFromProgress(value, state);
    assert.equal(state.kind, "indexing");
  }
  assert.deepEqual(stateFromProgress(first[first.length - 1], state), { kind: "indexing", percentage: 100 });
});

test("the settings the extension sends are all understood", async () => {
  await waitForIndex();
  // Pushed as the extension does on a change, then pulled (settings: null) as
  // VS Code's client does: the server asks workspace/configuration.
  await connection.sendNotification("workspace/didChangeConfiguration", { settings: { kenning: settings } });
  const pulls = configurationPulls;
  await connection.sendNotification("workspace/didChangeConfiguration", { settings: null });
  await eventually("the server pulls the kenning section", () => Promise.resolve(configurationPulls > pulls ? true : undefined));
  const status = await waitForIndex();
  assert.ok(status.chunks > 0);
  assert.deepEqual(settingsWarnings(), [], "no setting of the extension is unknown or invalid to the server");
});

test("searching 'read a json config file' puts load_config first", async () => {
  await waitForIndex();
  const args = toSearchArgs(parseQuery("read a json config file"), 5);
  const answer = await alive(server.search(args));
  assert.ok(answer.results.length > 0, "some results");
  assert.ok(answer.results.length <= 5, "k is honoured");
  assert.ok(answer.took_ms >= 0);
  assert.deepEqual(answer.notes, [], "a complete index with a model has nothing to warn about");
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

const retryUri = pathToFileURL(path.join(WORKSPACE, "web", "http_retry.ts")).toString();
// Inside fetchWithRetry (0-based line 5 is its `export async function` line).
const inRetry = { line: 5, character: 10 };

test("similar code leaves the chunk itself out", async () => {
  await waitForIndex();
  const similar = await alive(server.similar({ uri: retryUri, position: inRetry }, 3));
  assert.ok(similar.results.length > 0, "the other chunks are similar to some degree");
  assert.ok(similar.results.length <= 3, "k is honoured");
  assert.ok(
    !similar.results.some((r) => r.uri === retryUri && r.range.start.line <= inRetry.line && r.range.end.line > inRetry.line),
    `the chunk itself is left out: ${JSON.stringify(similar.results.map((r) => [r.symbol, r.range]))}`,
  );
  const selection = { start: { line: 6, character: 0 }, end: { line: 9, character: 0 } };
  const bySelection = await alive(server.similar({ uri: retryUri, range: selection }, 3));
  assert.ok(bySelection.results.length > 0, "a selection is a target too");
});

test("the Find similar code action carries a target the extension runs and shows", async () => {
  await waitForIndex();
  const actions = await alive(
    connection.sendRequest<{ title: string; command?: { command: string; arguments?: unknown[] } }[] | null>("textDocument/codeAction", {
      textDocument: { uri: retryUri },
      range: { start: inRetry, end: inRetry },
      context: { diagnostics: [] },
    }),
  );
  const action = (actions ?? []).find((a) => a.command?.command === SERVER_COMMANDS.similar);
  assert.ok(action?.command, `a kenning.similar code action (got ${JSON.stringify(actions)})`);
  assert.match(action.title, /similar/i);
  const target = targetFromArgs(action.command.arguments);
  assert.deepEqual(target, { uri: retryUri, position: inRetry }, "the extension can peek at the action's target");
  // What the extension's middleware does when the action runs.
  const answer = checkSearchAnswer(
    await alive(connection.sendRequest("workspace/executeCommand", action.command)),
    SERVER_COMMANDS.similar,
  );
  assert.ok(answer.results.length > 0);
});

test("templates: the fitting one first, offered as a code action, inserted as one snippet edit", async () => {
  await waitForIndex();
  const templates = await alive(server.matchTemplates({ uri: retryUri, position: inRetry }));
  assert.ok(templates.matches.length > 0, "some template fits a fetch-with-retry function");
  // The builtin library has a TypeScript fetch-with-retries template.
  assert.match(templates.matches[0].id, /fetch.*retr/, `best match ${JSON.stringify(templates.matches[0])}`);
  for (const m of templates.matches) {
    assert.ok(m.id.length > 0 && m.name.length > 0);
    assert.ok(m.score >= -1 && m.score <= 1 + 1e-9, `score ${m.score}`);
  }
  const scores = templates.matches.map((m) => m.score);
  assert.deepEqual(scores, [...scores].sort((a, b) => b - a), "best first");
  const actions = await alive(
    connection.sendRequest<{ title: string }[] | null>("textDocument/codeAction", {
      textDocument: { uri: retryUri },
      range: { start: inRetry, end: inRetry },
      context: { diagnostics: [] },
    }),
  );
  const titles = (actions ?? []).map((a) => a.title);
  // The best few fits are offered as code actions (the server shows at most
  // three, above a score floor): the best match always, and only matches.
  const offered = titles.filter((t) => t.startsWith("Insert template: "));
  assert.ok(
    offered.includes(`Insert template: ${templates.matches[0].name}`),
    `an action for the best match ${templates.matches[0].name} (got ${titles.join(", ")})`,
  );
  assert.ok(offered.length <= 3, `at most three template actions (got ${offered.length})`);
  const names = new Set(templates.matches.map((m) => `Insert template: ${m.name}`));
  for (const t of offered) {
    assert.ok(names.has(t), `${t} is one of the matches`);
  }

  // At the end of the file, as `Kenning: Insert Template` sends it.
  const text = readFileSync(path.join(WORKSPACE, "web", "http_retry.ts"), "utf8");
  await connection.sendNotification("textDocument/didOpen", { textDocument: { uri: retryUri, languageId: "typescript", version: 1, text } });
  try {
    const end = { line: text.split("\n").length - 1, character: 0 };
    const before = appliedEdits.length;
    await alive(server.applyTemplate(retryUri, end, templates.matches[0].id));
    assert.equal(appliedEdits.length, before + 1, "one workspace/applyEdit");
    // The extension inserts it as a snippet only when it is one text edit.
    const single = singleTextEdit(appliedEdits[before]);
    assert.ok(single, `one text edit: ${JSON.stringify(appliedEdits[before])}`);
    assert.equal(single.uri, retryUri);
    assert.deepEqual(single.range.start, end);
    assert.match(single.newText, /fetch/);
  } finally {
    await connection.sendNotification("textDocument/didClose", { textDocument: { uri: retryUri } });
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

test("an unsaved buffer is searched, and forgotten when closed", async () => {
  await waitForIndex();
  // Never written to disk: only the editor has it.
  const uri = pathToFileURL(path.join(WORKSPACE, "src", "unsaved_tax.py")).toString();
  const text = [
    "def vat_inclusive_price(net: float, rate: float) -> float:",
    '    """Add value-added tax to a net price and round to cents."""',
    "    return round(net * (1 + rate), 2)",
    "",
  ].join("\n");
  await connection.sendNotification("textDocument/didOpen", { textDocument: { uri, languageId: "python", version: 1, text } });
  const query = toSearchArgs(parseQuery("add sales tax to a price"), 3);
  const found = await eventually("the unsaved function is found", async () => {
    const answer = await alive(server.search(query));
    return answer.results[0]?.uri === uri ? answer.results[0] : undefined;
  });
  assert.match(found.symbol ?? "", /vat_inclusive_price$/);
  await connection.sendNotification("textDocument/didClose", { textDocument: { uri } });
  await eventually("the closed buffer leaves the index", async () => {
    const answer = await alive(server.search(query));
    return answer.results.some((r) => r.uri === uri) ? undefined : true;
  });
});

test("kenning.reindex answers with what the index holds", async () => {
  const before = await waitForIndex();
  const answer = await alive(server.reindex());
  assert.equal(answer.cancelled, false);
  assert.equal(answer.files, before.files);
  assert.equal(answer.chunks, before.chunks);
  assert.equal(answer.changed, 0, "nothing changed on disk");
  assert.equal(answer.pending, 0);
  assert.ok(answer.took_s >= 0);
});

test("bad input gets an error and the server goes on serving", async () => {
  await assert.rejects(
    alive(connection.sendRequest("workspace/executeCommand", { command: "kenning.noSuchCommand", arguments: [{}] })),
    (e: Error) => !/the server exited/.test(e.message),
  );
  await assert.rejects(
    alive(connection.sendRequest("workspace/executeCommand", { command: "kenning.search", arguments: [{ query: 42 }] })),
    (e: Error) => /query/.test(e.message),
  );
  await assert.rejects(
    alive(server.similar({ uri: "file:///nowhere/else.py", position: { line: 0, character: 0 } })),
    (e: Error) => /outside every workspace folder/.test(e.message),
  );
  const status = await alive(server.status());
  assert.equal(status.pending, 0);
});
