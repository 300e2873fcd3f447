import assert from "node:assert/strict";
import { test } from "node:test";
import { checkStatusAnswer } from "../../src/common/protocol";
import {
  stateFromNotification,
  stateFromProgress,
  stateFromStatus,
  statusRows,
  statusView,
} from "../../src/common/status";

/** A `kenning.status` answer as the server sends it (server/kenning/lsp/features/status.py). */
function wire(over: Record<string, unknown> = {}, metrics: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    files: 120,
    chunks: 2300,
    embedded: 2300,
    pending: 0,
    skipped: 7,
    model: "all-minilm-l6-v2-int8",
    device: "cpu",
    model_error: null,
    metrics: {
      index_bytes: 1048576,
      queries: 1500,
      query_ms_p95: 12.3456,
      indexing: null,
      queued: [],
      watching: "client",
      ...metrics,
    },
    folders: [{ root: "/home/u/shop", files: 120, chunks: 2300, embedded: 2300, pending: 0, metrics: {} }],
    ...over,
  };
}

const status = (over: Record<string, unknown> = {}, metrics: Record<string, unknown> = {}) =>
  checkStatusAnswer(wire(over, metrics));

test("an idle index is ready with its chunk count", () => {
  const state = stateFromStatus(status());
  assert.deepEqual(state, { kind: "ready", files: 120, chunks: 2300 });
  const view = statusView(state);
  assert.equal(view.text, "$(search) Kenning 2,300");
  assert.match(view.tooltip, /2,300 chunks in 120 files/);
  assert.equal(view.busy, false);
});

test("a running index job means indexing, with the share of chunks embedded", () => {
  const state = stateFromStatus(status({ embedded: 575, pending: 1725 }, { indexing: "refresh:/home/u/shop" }));
  assert.deepEqual(state, { kind: "indexing", percentage: 25, message: "1,725 chunks to embed" });
  assert.equal(statusView(state).text, "$(sync~spin) Kenning 25%");
  // Before any chunk exists (the scan), and with only a queued job.
  const scanning = stateFromStatus(status({ files: 0, chunks: 0, embedded: 0 }, { indexing: "starting" }));
  assert.deepEqual(scanning, { kind: "indexing", message: "reading files" });
  assert.equal(stateFromStatus(status({}, { queued: ["embed:/home/u/shop"] })).kind, "indexing");
});

test("another process indexing the folder is named while this server waits for it", () => {
  const state = stateFromStatus(
    status({ indexing_by: { pid: 4242, command: "kenning index", root: "/home/u/shop" } }, { indexing: "refresh:/home/u/shop" }),
  );
  assert.deepEqual(state, { kind: "indexing", message: "waiting: another process (pid 4242, kenning index) is indexing /home/u/shop" });
  assert.match(statusView(state).tooltip, /pid 4242/);
  assert.equal(stateFromStatus(status({ indexing_by: null })).kind, "ready");
});

test("while a progress bar is open, its state wins over the polled status", () => {
  const fromProgress = { kind: "indexing" as const, percentage: 63, message: "embedding 10/40 chunks" };
  const busy = status({ embedded: 10, pending: 30 }, { indexing: "refresh:/home/u/shop" });
  assert.deepEqual(stateFromStatus(busy, fromProgress), fromProgress);
  // Once the server is idle, the status is the truth.
  assert.equal(stateFromStatus(status(), fromProgress).kind, "ready");
});

test("pending chunks with no job running are a warning, not endless indexing", () => {
  // No model: chunks are never embedded; the user must hear why search is lexical.
  const noModel = stateFromStatus(status({ model: null, device: null, embedded: 0, pending: 2300, model_error: "model folder missing" }));
  assert.equal(noModel.kind, "ready");
  const view = statusView(noModel);
  assert.equal(view.severity, "warning");
  assert.equal(view.text, "$(warning) Kenning 2,300");
  assert.match(view.tooltip, /lexical only \(model folder missing\)/);
  // A cancelled reindex left some chunks without vectors.
  const cancelled = statusView(stateFromStatus(status({ embedded: 2200, pending: 100 })));
  assert.match(cancelled.tooltip, /100 chunks are not embedded yet/);
  // A folder whose index could not be opened.
  const broken = statusView(stateFromStatus(status({ folders: [{ root: "/x", error: "/x: the index could not be opened (disk full)" }] })));
  assert.match(broken.tooltip, /disk full/);
});

test("$/progress drives the percentage and end waits for the next status", () => {
  // The values the server sends (server/kenning/lsp/progress.py).
  let state = stateFromProgress({ kind: "begin", title: "kenning: indexing", message: "1 folder(s)", percentage: 0 }, { kind: "starting" });
  assert.deepEqual(state, { kind: "indexing", percentage: 0, message: "1 folder(s)" });
  state = stateFromProgress({ kind: "report", message: "reading 3/10 files", percentage: 15 }, state);
  assert.equal(statusView(state).text, "$(sync~spin) Kenning 15%");
  assert.match(statusView(state).tooltip, /reading 3\/10 files/);
  state = stateFromProgress({ kind: "report", message: "embedding 4/40 chunks" }, state);
  assert.equal(state.kind === "indexing" && state.percentage, 15, "a report without a percentage keeps the last");
  assert.deepEqual(stateFromProgress({ kind: "end", message: "3 files, 7 chunks" }, state), { kind: "indexing", percentage: 100 });
  const ready = { kind: "ready" as const, files: 1, chunks: 2 };
  assert.deepEqual(stateFromProgress({ kind: "end" }, ready), ready);
});

test("errors say so and are marked as errors", () => {
  const view = statusView({ kind: "error", message: "kenning is not installed in /usr/bin/python3" });
  assert.equal(view.severity, "error");
  assert.equal(view.text, "$(error) Kenning");
  assert.match(view.tooltip, /not installed/);
});

test("the status report lists the figures, folders and flattened metrics", () => {
  const rows = statusRows(status({}, { embedding: { chunks_per_s: 812.25 } }));
  assert.deepEqual(rows, [
    ["Files", "120"],
    ["Chunks", "2,300"],
    ["Chunks to embed", "0"],
    ["Skipped files", "7"],
    ["Model", "all-minilm-l6-v2-int8"],
    ["Device", "cpu"],
    ["Indexing", "idle"],
    ["Folder /home/u/shop", "120 files, 2,300 chunks"],
    ["index_bytes", "1,048,576"],
    ["queries", "1,500"],
    ["query_ms_p95", "12.346"],
    ["queued", "none"],
    ["watching", "client"],
    ["embedding.chunks_per_s", "812.25"],
  ]);
});

test("the status report says why there is no model and which job runs", () => {
  const rows = new Map(
    statusRows(
      status(
        { model: null, device: null, model_error: "no model at /m", folders: [{ root: "/x", error: "/x: not readable" }] },
        { indexing: "refresh:/x", query_ms_p95: null },
      ),
    ),
  );
  assert.equal(rows.get("Model"), "none: search is lexical only");
  assert.equal(rows.get("Model error"), "no model at /m");
  assert.equal(rows.get("Device"), "(none yet)");
  assert.equal(rows.get("Indexing"), "refresh:/x");
  assert.equal(rows.get("Folder /x"), "/x: not readable");
  assert.equal(rows.get("query_ms_p95"), "none");
  assert.equal(rows.get("indexing"), undefined, "the job is shown once");
});

test("a kenning/status notification sets the state; a bad one is reported and changes nothing", () => {
  const errors: unknown[] = [];
  const onError = (e: unknown): void => void errors.push(e);
  const indexing = stateFromNotification(wire({ pending: 300, embedded: 2000 }, { indexing: "embed:/w" }), { kind: "starting" }, false, onError);
  assert.deepEqual(indexing, { kind: "indexing", percentage: 86, message: "300 chunks to embed" });
  // While a $/progress bar is open its percentage wins over the status's.
  const fromBar = { kind: "indexing" as const, percentage: 42, message: "reading 4/10 files" };
  assert.deepEqual(stateFromNotification(wire({}, { indexing: "refresh:/w" }), fromBar, true, onError), fromBar);
  const ready = stateFromNotification(wire(), indexing, false, onError);
  assert.deepEqual(ready, { kind: "ready", files: 120, chunks: 2300 });
  assert.deepEqual(errors, []);
  assert.equal(stateFromNotification({ files: "many" }, ready, false, onError), ready);
  assert.equal(errors.length, 1);
});
