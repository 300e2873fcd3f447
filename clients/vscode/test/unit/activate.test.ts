// Activation inside a mocked VS Code: every palette command is registered, and
// an interpreter that does not run ends in an error the user can act on.
import "./use-vscode-mock";
import assert from "node:assert/strict";
import { test } from "node:test";
import type * as vscode from "vscode";
import { COMMANDS, SERVER_COMMANDS } from "../../src/common/ids";
import { activate, deactivate } from "../../src/extension";
import { Memento, recorded } from "./vscode-mock";

test("activate registers the palette commands and reports an interpreter that does not run", async () => {
  recorded.reset();
  recorded.settings.set("kenning.interpreter", ["/nonexistent/bin/python3"]);
  recorded.settings.set("kenning.trace.server", "messages");
  const context = {
    subscriptions: [] as { dispose(): unknown }[],
    workspaceState: new Memento(),
    extension: { packageJSON: { version: "0.1.0" } },
  };
  await activate(context as unknown as vscode.ExtensionContext);
  try {
    assert.deepEqual([...recorded.commands.keys()].sort(), Object.values(COMMANDS).sort());
    for (const id of Object.values(SERVER_COMMANDS)) {
      assert.ok(!recorded.commands.has(id), `${id} is left to vscode-languageclient`);
    }
    const item = recorded.statusItems[0];
    assert.equal(item.visible, true);
    assert.equal(item.command, COMMANDS.showStatus);
    assert.equal(item.text, "$(error) Kenning");
    assert.match(item.tooltip?.value ?? "", /nonexistent.*does not run/);
    assert.match(item.tooltip?.value ?? "", /command:kenning\.showLogs/);
    assert.equal(recorded.errors.length, 1);
    assert.match(recorded.errors[0], /^Kenning: the Python interpreter \/nonexistent\/bin\/python3 does not run/);
    // trace.server = messages: debug lines reach the log.
    assert.ok(recorded.log.some((l) => l.startsWith("[info ") && l.includes("from the kenning.interpreter setting")));
  } finally {
    await deactivate();
    for (const d of context.subscriptions) {
      d.dispose();
    }
  }
});
