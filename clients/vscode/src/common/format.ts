/** How server answers look in VS Code's pickers: pure string work, no `vscode` import. */
import type { ReindexAnswer, SearchResult, TemplateMatch } from "./protocol";

export interface Folder {
  name: string;
  uri: string;
}

/** The plain fields of a QuickPickItem (the caller adds `vscode` objects). */
export interface PickFields {
  label: string;
  description: string;
  detail: string;
}

const KIND_ICONS: Record<string, string> = {
  function: "symbol-function",
  method: "symbol-method",
  class: "symbol-class",
  struct: "symbol-struct",
  interface: "symbol-interface",
  enum: "symbol-enum",
  module: "symbol-module",
  namespace: "symbol-namespace",
  impl: "symbol-class",
  trait: "symbol-interface",
  type: "symbol-type-parameter",
  constant: "symbol-constant",
  variable: "symbol-variable",
  field: "symbol-field",
};

/** A codicon for a chunk kind; plain text chunks get the file icon. */
export function kindIcon(kind: string): string {
  return KIND_ICONS[kind.toLowerCase()] ?? "symbol-file";
}

/** The last segment of a `/`-separated path or URI. */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/**
 * A URI shown relative to the workspace folder that holds it, with `/`; the
 * folder's name goes in front when the workspace has several roots. URIs in
 * no folder are shown as their decoded path.
 */
export function displayPath(uri: string, folders: readonly Folder[]): string {
  let best: Folder | undefined;
  for (const folder of folders) {
    const root = folder.uri.replace(/\/+$/, "");
    if (uri.startsWith(root + "/") && (best === undefined || root.length > best.uri.length)) {
      best = { name: folder.name, uri: root };
    }
  }
  if (best === undefined) {
    return safeDecode(uri.replace(/^file:\/\//, ""));
  }
  const rel = safeDecode(uri.slice(best.uri.length + 1));
  return folders.length > 1 ? `${best.name}/${rel}` : rel;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The first line of a snippet that says something, trimmed and capped. */
export function firstLine(snippet: string, max = 120): string {
  const line = snippet.split(/\r?\n/).find((l) => l.trim() !== "") ?? "";
  const trimmed = line.trim();
  return trimmed.length > max ? trimmed.slice(0, max - 1) + "…" : trimmed;
}

/**
 * One search or similar result as a picker row:
 * label `$(symbol-function) load_config`, description `src/config.py:10`,
 * detail the snippet's first line. Lines are shown 1-based.
 */
export function resultFields(result: SearchResult, folders: readonly Folder[]): PickFields {
  const where = `${displayPath(result.uri, folders)}:${result.range.start.line + 1}`;
  const name = result.symbol ?? baseName(displayPath(result.uri, folders));
  return {
    label: `$(${kindIcon(result.kind)}) ${name}`,
    description: `${where}  ·  ${result.score.toFixed(2)}`,
    detail: firstLine(result.snippet),
  };
}

export function templateFields(match: TemplateMatch): PickFields {
  const lang = match.language ? `${match.language} · ` : "";
  return {
    label: match.name,
    description: `${lang}${match.score.toFixed(2)}`,
    detail: match.description,
  };
}

/**
 * The QuickPick's title line after an answer; the server's notes (lexical
 * results only, embeddings incomplete) follow, since they explain poor results.
 */
export function searchTitle(count: number, tookMs: number, filters: string[], notes: readonly string[] = []): string {
  const plural = count === 1 ? "result" : "results";
  const extra = filters.length > 0 ? ` · ${filters.join(" ")}` : "";
  const said = notes.length > 0 ? ` · ${notes.join("; ")}` : "";
  return `Kenning: ${count} ${plural} in ${Math.round(tookMs)} ms${extra}${said}`;
}

/** What `Kenning: Reindex Workspace` tells the user when the server answers. */
export function reindexSummary(answer: ReindexAnswer): string {
  const n = (count: number, word: string): string => `${count.toLocaleString("en-US")} ${word}${count === 1 ? "" : "s"}`;
  const head = answer.cancelled ? "reindexing cancelled" : "index up to date";
  const parts = [`${n(answer.files, "file")}, ${n(answer.chunks, "chunk")}`];
  if (answer.changed > 0 || answer.embedded > 0) {
    parts.push(`${n(answer.changed, "file")} re-read, ${n(answer.embedded, "chunk")} embedded`);
  }
  if (answer.pending > 0) {
    parts.push(`${n(answer.pending, "chunk")} still to embed`);
  }
  return `${head}: ${parts.join("; ")} in ${answer.took_s.toFixed(1)} s`;
}
