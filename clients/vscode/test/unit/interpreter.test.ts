import assert from "node:assert/strict";
import { test } from "node:test";
import { expandInterpreter, pipInstallArgs, resolveServer, type Probes } from "../../src/common/interpreter";

function probes(opts: {
  python?: string[];
  onPath?: string;
  installed?: string[];
  broken?: string[];
  calls?: string[];
}): Probes {
  const calls = opts.calls ?? [];
  return {
    pythonExtension: () => {
      calls.push("python");
      return Promise.resolve(opts.python);
    },
    which: (name) => {
      calls.push(`which ${name}`);
      return Promise.resolve(opts.onPath);
    },
    hasKenning: (interpreter) => {
      calls.push(`probe ${interpreter[0]}`);
      if (opts.broken?.includes(interpreter[0])) {
        return Promise.reject(new Error("No such file or directory"));
      }
      return Promise.resolve(opts.installed?.includes(interpreter[0]) ?? false);
    },
  };
}

test("the setting wins over the Python extension and PATH", async () => {
  const calls: string[] = [];
  const r = await resolveServer(
    ["/venv/bin/python", "-X", "utf8"],
    probes({ python: ["/usr/bin/python3"], onPath: "/usr/bin/kenning", installed: ["/venv/bin/python"], calls }),
  );
  assert.deepEqual(r, {
    kind: "ready",
    source: "setting",
    command: "/venv/bin/python",
    args: ["-X", "utf8", "-m", "kenning", "lsp"],
    interpreter: ["/venv/bin/python", "-X", "utf8"],
  });
  assert.deepEqual(calls, ["probe /venv/bin/python"], "nothing else is consulted");
});

test("a setting without kenning is reported, never replaced by PATH", async () => {
  const r = await resolveServer(["/venv/bin/python"], probes({ onPath: "/usr/bin/kenning" }));
  assert.deepEqual(r, { kind: "notInstalled", source: "setting", interpreter: ["/venv/bin/python"] });
});

test("a setting that does not run is reported as broken with the reason", async () => {
  const r = await resolveServer(["/gone/python"], probes({ broken: ["/gone/python"] }));
  assert.equal(r.kind, "broken");
  assert.equal(r.kind === "broken" && r.error, "No such file or directory");
});

test("without a setting the Python extension's interpreter is used when it has kenning", async () => {
  const r = await resolveServer([], probes({ python: ["/proj/.venv/bin/python"], onPath: "/usr/bin/kenning", installed: ["/proj/.venv/bin/python"] }));
  assert.equal(r.kind, "ready");
  assert.equal(r.kind === "ready" && r.source, "python");
  assert.equal(r.kind === "ready" && r.command, "/proj/.venv/bin/python");
});

test("kenning on PATH serves when the Python extension's interpreter lacks it", async () => {
  const r = await resolveServer([], probes({ python: ["/proj/.venv/bin/python"], onPath: "/home/u/.local/bin/kenning" }));
  assert.deepEqual(r, { kind: "ready", source: "path", command: "/home/u/.local/bin/kenning", args: ["lsp"] });
});

test("kenning nowhere: the Python extension's interpreter is named for installing", async () => {
  const r = await resolveServer([], probes({ python: ["/proj/.venv/bin/python"] }));
  assert.deepEqual(r, { kind: "notInstalled", source: "python", interpreter: ["/proj/.venv/bin/python"] });
});

test("no Python extension: PATH, then nothing", async () => {
  assert.deepEqual(await resolveServer([], probes({ onPath: "/usr/bin/kenning" })), {
    kind: "ready",
    source: "path",
    command: "/usr/bin/kenning",
    args: ["lsp"],
  });
  assert.deepEqual(await resolveServer([], probes({})), { kind: "notFound" });
});

test("a failing Python extension counts as absent", async () => {
  const p = probes({ onPath: "/usr/bin/kenning" });
  p.pythonExtension = () => Promise.reject(new Error("activation failed"));
  const r = await resolveServer([], p);
  assert.equal(r.kind === "ready" && r.source, "path");
});

test("the setting expands ${workspaceFolder}, ${userHome} and ~", () => {
  assert.deepEqual(
    expandInterpreter(["${workspaceFolder}/.venv/bin/python", "~/x", "${userHome}/y", "~user", ""], "/proj", "/home/u"),
    ["/proj/.venv/bin/python", "/home/u/x", "/home/u/y", "~user"],
  );
});

test("pip installs into the interpreter itself", () => {
  assert.deepEqual(pipInstallArgs(["/v/python", "-I"]), {
    command: "/v/python",
    args: ["-I", "-m", "pip", "install", "--upgrade", "kenning"],
  });
});
