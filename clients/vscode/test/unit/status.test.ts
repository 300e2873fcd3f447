import assert from "node:assert/strict";
import { test } from "node:test";
import { stateFromProgress, stateFromStatus, statusRows, statusView } from "../../src/common/status";

const answer = { files: 120, chunks: 2300, pending: 0, model: "all-minilm-l6-v2-int8", device: "cpu" };

test("an idle index is ready with its chunk count", () => {
  const state = stateFromStatus(answer);
  assert.deepEqual(state, { kind: "ready", files: 120, chunks: 2300 });
  const view = statusView(state);
  assert.equal(view.text, "$(search) Kenning 2,300");
  assert.match(view.tooltip, /2,300 chunks in 120 files/);
  assert.equal(view.busy, false);
});

test("pending files mean indexing, with a percentage", () => {
  const state = stateFromStatus({ ...answer, files: 30, pending: 90 });
  assert.deepEqual(state, { kind: "indexing", percentage: 25, message: "90 files to go" });
  assert.equal(statusView(state).text, "$(sync~spin) Kenning 25%");
});

test("$/progress drives the percentage and end waits for the next status", () => {
  let state = stateFromProgress({ kind: "begin", title: "Indexing", percentage: 0 }, { kind: "starting" });
  assert.deepEqual(state, { kind: "indexing", percentage: 0, message: "Indexing" });
  state = stateFromProgress({ kind: "report", message: "src/a.py", percentage: 42.4 }, state);
  assert.equal(statusView(state).text, "$(sync~spin) Kenning 42%");
  state = stateFromProgress({ kind: "report", message: "src/b.py" }, state);
  assert.equal(state.kind === "indexing" && state.percentage, 42.4, "a report without a percentage keeps the last");
  assert.deepEqual(stateFromProgress({ kind: "end" }, state), { kind: "indexing", percentage: 100 });
  const ready = { kind: "ready" as const, files: 1, chunks: 2 };
  assert.deepEqual(stateFromProgress({ kind: "end" }, ready), ready);
});

test("errors say so and are marked as errors", () => {
  const view = statusView({ kind: "error", message: "kenning is not installed in /usr/bin/python3" });
  assert.equal(view.severity, "error");
  assert.equal(view.text, "$(error) Kenning");
  assert.match(view.tooltip, /not installed/);
});

test("the status report lists the figures and flattened metrics", () => {
  const rows = statusRows({ ...answer, metrics: { search: { p50_ms: 12.3456, count: 1500 }, db_bytes: 1048576, note: "ok" } });
  assert.deepEqual(rows, [
    ["Files", "120"],
    ["Chunks", "2,300"],
    ["Pending files", "0"],
    ["Model", "all-minilm-l6-v2-int8"],
    ["Device", "cpu"],
    ["search.p50_ms", "12.346"],
    ["search.count", "1,500"],
    ["db_bytes", "1,048,576"],
    ["note", "ok"],
  ]);
});
