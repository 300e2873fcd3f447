import assert from "node:assert/strict";
import { test } from "node:test";
import { Logger, levelForTrace } from "../../src/common/log";

test("the log level follows kenning.trace.server", () => {
  assert.equal(levelForTrace("off"), "info");
  assert.equal(levelForTrace(undefined), "info");
  assert.equal(levelForTrace("messages"), "debug");
  assert.equal(levelForTrace("verbose"), "trace");
});

test("lines below the level are dropped; errors carry their message", () => {
  const lines: string[] = [];
  const log = new Logger((l) => lines.push(l), "info", () => new Date("2024-01-01T10:11:12.345Z"));
  log.debug("hidden");
  log.info("shown");
  log.error("failed", "boom");
  log.level = "debug";
  log.debug("now shown");
  assert.deepEqual(lines, [
    "[info  10:11:12.345] shown",
    "[error 10:11:12.345] failed: boom",
    "[debug 10:11:12.345] now shown",
  ]);
});
