import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { COMMANDS, SERVER_COMMANDS } from "../../src/common/ids";
import {
  CLIENT_SETTING_KEYS,
  SERVER_SETTING_KEYS,
  affectsServer,
  needsRestart,
  toServerSettings,
} from "../../src/common/settings";

// The server's defaults as CONTRACT.md states them, plus `include` from config.py.
const CONTRACT_DEFAULTS = {
  model: null,
  device: "auto",
  exclude: ["**/node_modules/**"],
  include: [],
  index: { onChange: true, debounceMs: 300, maxFileBytes: 1000000 },
  search: { k: 20, mode: "hybrid" },
  workspaceSymbol: { semantic: true },
  duplicates: { diagnostics: false, threshold: 0.85 },
  remote: { endpoints: [], timeoutMs: 2000 },
};

interface Manifest {
  contributes: {
    commands: { command: string; title: string; category: string }[];
    configuration: { properties: Record<string, { default: unknown; description?: string; markdownDescription?: string }> };
    keybindings: { command: string }[];
    menus: Record<string, { command: string }[]>;
  };
}

// Compiled to out/test/unit: the manifest is three levels up.
const manifest = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8")) as Manifest;
const properties = manifest.contributes.configuration.properties;

function fromManifest(key: string): unknown {
  return properties[`kenning.${key}`]?.default;
}

test("package.json defaults, sent as initializationOptions, equal the server's defaults", () => {
  assert.deepEqual(toServerSettings(fromManifest), CONTRACT_DEFAULTS);
});

test("every setting in package.json is a server setting or a client one, and described", () => {
  const expected = [...SERVER_SETTING_KEYS, ...CLIENT_SETTING_KEYS].map((k) => `kenning.${k}`).sort();
  assert.deepEqual(Object.keys(properties).sort(), expected);
  for (const [key, prop] of Object.entries(properties)) {
    assert.ok((prop.markdownDescription ?? prop.description ?? "").length > 20, `${key} needs a description`);
  }
});

test("the user's values are nested under the server's keys; client keys stay out", () => {
  const values: Record<string, unknown> = {
    model: "jina-code-v2",
    device: "cpu",
    "search.k": 5,
    "duplicates.diagnostics": true,
    interpreter: ["/venv/bin/python"],
    "trace.server": "verbose",
  };
  assert.deepEqual(toServerSettings((k) => values[k]), {
    model: "jina-code-v2",
    device: "cpu",
    search: { k: 5 },
    duplicates: { diagnostics: true },
  });
});

test("an empty model string means the default model", () => {
  assert.deepEqual(toServerSettings((k) => (k === "model" ? "" : undefined)), { model: null });
});

test("interpreter, model, device and feature switch changes restart; others are sent as settings", () => {
  const changed = (...keys: string[]) => (section: string) => keys.includes(section);
  assert.equal(needsRestart(changed("kenning.interpreter")), true);
  assert.equal(needsRestart(changed("kenning.model")), true);
  assert.equal(needsRestart(changed("kenning.device")), true);
  // The server registers these features in initialize only.
  assert.equal(needsRestart(changed("kenning.workspaceSymbol.semantic")), true);
  assert.equal(needsRestart(changed("kenning.duplicates.diagnostics")), true);
  assert.equal(needsRestart(changed("kenning.duplicates.threshold")), false);
  assert.equal(needsRestart(changed("kenning.search.k")), false);
  assert.equal(affectsServer(changed("kenning.search.k")), true);
  assert.equal(affectsServer(changed("kenning.trace.server")), false);
  assert.equal(affectsServer(changed("editor.fontSize")), false);
});

test("the palette commands are the contract's ids and titles", () => {
  const commands = Object.fromEntries(manifest.contributes.commands.map((c) => [c.command, c.title]));
  assert.deepEqual(commands, {
    [COMMANDS.searchCode]: "Search Code",
    [COMMANDS.findSimilar]: "Find Similar Code",
    [COMMANDS.insertTemplate]: "Insert Template",
    [COMMANDS.reindexWorkspace]: "Reindex Workspace",
    [COMMANDS.showStatus]: "Show Index Status",
    [COMMANDS.showLogs]: "Show Logs",
    [COMMANDS.restart]: "Restart Server",
  });
  for (const c of manifest.contributes.commands) {
    assert.equal(c.category, "Kenning");
  }
  const serverIds: string[] = Object.values(SERVER_COMMANDS);
  for (const id of Object.values(COMMANDS)) {
    assert.ok(!serverIds.includes(id), `${id} clashes with a server command the client registers itself`);
  }
});

test("Search Code has a keybinding and Find Similar Code is in the editor context menu", () => {
  assert.ok(manifest.contributes.keybindings.some((k) => k.command === COMMANDS.searchCode));
  assert.ok(manifest.contributes.menus["editor/context"].some((m) => m.command === COMMANDS.findSimilar));
});
