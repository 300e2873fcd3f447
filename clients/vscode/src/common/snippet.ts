/**
 * Turning the server's template edit into a snippet insertion: the server
 * sends a `WorkspaceEdit`; when it is one insertion into one document, the
 * extension inserts it with `insertSnippet` so tab stops work and the cursor
 * lands inside the template.
 */
import type { Range } from "./protocol";

export interface SingleEdit {
  uri: string;
  version?: number | null;
  range: Range;
  newText: string;
}

interface TextEditJson {
  range: Range;
  newText: string;
}

/** The edit's only text edit, or undefined when it is anything else. */
export function singleTextEdit(edit: unknown): SingleEdit | undefined {
  if (typeof edit !== "object" || edit === null) {
    return undefined;
  }
  const e = edit as { changes?: Record<string, TextEditJson[]>; documentChanges?: unknown[] };
  const found: SingleEdit[] = [];
  if (Array.isArray(e.documentChanges)) {
    for (const change of e.documentChanges) {
      const c = change as { textDocument?: { uri: string; version?: number | null }; edits?: TextEditJson[] };
      if (c.textDocument === undefined || !Array.isArray(c.edits)) {
        return undefined; // a create/rename/delete: not a plain insertion
      }
      for (const te of c.edits) {
        found.push({ uri: c.textDocument.uri, version: c.textDocument.version, range: te.range, newText: te.newText });
      }
    }
  } else if (e.changes !== undefined) {
    for (const [uri, edits] of Object.entries(e.changes)) {
      for (const te of edits) {
        found.push({ uri, range: te.range, newText: te.newText });
      }
    }
  }
  if (found.length !== 1 || typeof found[0].newText !== "string" || found[0].range === undefined) {
    return undefined;
  }
  return found[0];
}

const TABSTOP = /\$(\d+|\{\d+[:|}])/;

/**
 * The snippet source for a template's text. Text that already uses tab stops
 * is kept as snippet syntax; plain text is escaped (a `$` in PHP or shell code
 * must stay a `$`) and gets a final tab stop at its end.
 *
 * VS Code re-indents every inserted line after the first by the cursor line's
 * indentation; the server already indented them, so that much is taken off first.
 */
export function toSnippet(text: string, lineIndent: string): string {
  const lines = text.split("\n");
  const dedented = lines
    .map((line, i) => (i > 0 && lineIndent !== "" && line.startsWith(lineIndent) ? line.slice(lineIndent.length) : line))
    .join("\n");
  if (TABSTOP.test(dedented)) {
    return dedented;
  }
  return dedented.replace(/[$}\\]/g, "\\$&") + "$0";
}
