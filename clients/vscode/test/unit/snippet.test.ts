import assert from "node:assert/strict";
import { test } from "node:test";
import { singleTextEdit, toSnippet } from "../../src/common/snippet";

const range = { start: { line: 4, character: 4 }, end: { line: 4, character: 4 } };

test("one insertion is found in documentChanges and in changes", () => {
  assert.deepEqual(
    singleTextEdit({ documentChanges: [{ textDocument: { uri: "file:///a.py", version: 3 }, edits: [{ range, newText: "x" }] }] }),
    { uri: "file:///a.py", version: 3, range, newText: "x" },
  );
  assert.deepEqual(singleTextEdit({ changes: { "file:///a.py": [{ range, newText: "y" }] } }), {
    uri: "file:///a.py",
    range,
    newText: "y",
  });
});

test("several edits, file operations or junk are not a single insertion", () => {
  assert.equal(singleTextEdit({ changes: { "file:///a": [{ range, newText: "1" }, { range, newText: "2" }] } }), undefined);
  assert.equal(singleTextEdit({ documentChanges: [{ kind: "create", uri: "file:///n" }] }), undefined);
  assert.equal(singleTextEdit(null), undefined);
  assert.equal(singleTextEdit({}), undefined);
});

test("plain template text is escaped and ends in a final tab stop", () => {
  assert.equal(toSnippet('echo "$HOME" {x}', ""), 'echo "\\$HOME" {x\\}$0');
  assert.equal(toSnippet("a\\b", ""), "a\\\\b$0");
});

test("template text with tab stops is kept as a snippet", () => {
  assert.equal(toSnippet("def ${1:name}():\n    $0", ""), "def ${1:name}():\n    $0");
});

test("the server's indentation is taken off so VS Code's re-indent does not double it", () => {
  const text = "def f():\n        return 1\n    ";
  assert.equal(toSnippet(text, "    "), "def f():\n    return 1\n$0");
});
