/** The index state shown in the status bar, from `$/progress` and `kenning/status`. */
import { checkStatusAnswer, type StatusAnswer } from "./protocol";

export type IndexState =
  | { kind: "starting" }
  | { kind: "indexing"; percentage?: number; message?: string }
  | { kind: "ready"; files: number; chunks: number; warning?: string }
  | { kind: "error"; message: string }
  | { kind: "stopped" };

export interface StatusView {
  text: string;
  tooltip: string;
  severity: "info" | "warning" | "error";
  busy: boolean;
}

function plural(n: number, one: string, many: string): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** What is wrong with an idle index, for the status bar's warning; undefined when nothing is. */
function idleWarning(answer: StatusAnswer): string | undefined {
  const problems: string[] = [];
  if (answer.modelError !== undefined) {
    problems.push(`no embedding model, search is lexical only (${answer.modelError})`);
  } else if (answer.pending > 0) {
    // A cancelled reindex leaves these; they are embedded by the next one.
    problems.push(`${plural(answer.pending, "chunk is", "chunks are")} not embedded yet (Reindex Workspace embeds them)`);
  }
  for (const folder of answer.folders) {
    if (folder.error !== undefined) {
      problems.push(folder.error);
    }
  }
  return problems.length > 0 ? problems.join("; ") : undefined;
}

/**
 * The `kenning.status` answer as an index state. The server is busy while an
 * index job runs or waits (`metrics.indexing`, `metrics.queued`); `pending`
 * counts chunks without a vector, which stay pending for good when no model
 * could be loaded, so pending alone does not mean busy.
 *
 * While busy, the state that an open `$/progress` drives (`fromProgress`) is
 * kept: its percentage is the precise one.
 */
export function stateFromStatus(answer: StatusAnswer, fromProgress?: IndexState): IndexState {
  if (answer.indexingBy !== undefined) {
    // Not this server's work: say whose, so a slow first search is explained.
    const by = answer.indexingBy;
    const who = by.pid === undefined ? "another process" : `another process (pid ${by.pid}${by.command ? `, ${by.command}` : ""})`;
    return { kind: "indexing", message: `waiting: ${who} is indexing ${by.root || "this folder"}` };
  }
  const queued = answer.metrics?.queued;
  const busy = answer.indexing !== undefined || (Array.isArray(queued) && queued.length > 0);
  if (busy) {
    if (fromProgress?.kind === "indexing") {
      return fromProgress;
    }
    if (answer.pending > 0 && answer.modelError === undefined) {
      const percentage = answer.chunks > 0 ? Math.floor((100 * answer.embedded) / answer.chunks) : undefined;
      return { kind: "indexing", percentage, message: `${plural(answer.pending, "chunk", "chunks")} to embed` };
    }
    return { kind: "indexing", message: "reading files" };
  }
  const warning = idleWarning(answer);
  const ready = { kind: "ready" as const, files: answer.files, chunks: answer.chunks };
  return warning === undefined ? ready : { ...ready, warning };
}

/**
 * The state after a `kenning/status` notification (the same payload as the
 * `kenning.status` answer, pushed by the server when it changes). A malformed
 * payload leaves the state as it was and is reported through `onError`.
 */
export function stateFromNotification(
  params: unknown,
  previous: IndexState,
  progressOpen: boolean,
  onError: (error: unknown) => void,
): IndexState {
  let answer: StatusAnswer;
  try {
    answer = checkStatusAnswer(params);
  } catch (error) {
    onError(error);
    return previous;
  }
  return stateFromStatus(answer, progressOpen ? previous : undefined);
}

/** Folds one `$/progress` value into the state (WorkDoneProgressBegin/Report/End). */
export function stateFromProgress(
  value: { kind: string; percentage?: number; message?: string; title?: string },
  previous: IndexState,
): IndexState {
  if (value.kind === "end") {
    // The chunk count comes with the next kenning/status; keep the old one meanwhile.
    return previous.kind === "ready" ? previous : { kind: "indexing", percentage: 100 };
  }
  const last = previous.kind === "indexing" ? previous : undefined;
  return {
    kind: "indexing",
    percentage: value.percentage ?? last?.percentage,
    message: value.message ?? value.title ?? last?.message,
  };
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

export function statusView(state: IndexState): StatusView {
  switch (state.kind) {
    case "starting":
      return { text: "$(loading~spin) Kenning", tooltip: "Kenning: starting the server", severity: "info", busy: true };
    case "indexing": {
      const pct = state.percentage === undefined ? "" : ` ${Math.round(state.percentage)}%`;
      const msg = state.message ? `: ${state.message}` : "";
      return {
        text: `$(sync~spin) Kenning${pct}`,
        tooltip: `Kenning: indexing${pct}${msg}`,
        severity: "info",
        busy: true,
      };
    }
    case "ready": {
      const summary = `${count(state.chunks)} chunks in ${count(state.files)} files`;
      if (state.warning !== undefined) {
        return {
          text: `$(warning) Kenning ${count(state.chunks)}`,
          tooltip: `Kenning: ${summary}; ${state.warning}`,
          severity: "warning",
          busy: false,
        };
      }
      return {
        text: `$(search) Kenning ${count(state.chunks)}`,
        tooltip: `Kenning: index ready, ${summary}`,
        severity: "info",
        busy: false,
      };
    }
    case "error":
      return { text: "$(error) Kenning", tooltip: `Kenning: ${state.message}`, severity: "error", busy: false };
    case "stopped":
      return { text: "$(circle-slash) Kenning", tooltip: "Kenning: server stopped", severity: "warning", busy: false };
  }
}

/** The `Kenning: Show Index Status` rows: one `[label, value]` per figure. */
export function statusRows(answer: StatusAnswer): [string, string][] {
  const model = answer.model || (answer.modelError !== undefined ? "none: search is lexical only" : "(loading)");
  const rows: [string, string][] = [
    ["Files", count(answer.files)],
    ["Chunks", count(answer.chunks)],
    ["Chunks to embed", count(answer.pending)],
    ["Skipped files", count(answer.skipped)],
    ["Model", model],
  ];
  if (answer.modelError !== undefined) {
    rows.push(["Model error", answer.modelError]);
  }
  rows.push(["Device", answer.device || "(none yet)"]);
  rows.push(["Indexing", answer.indexing ?? "idle"]);
  for (const folder of answer.folders) {
    const value = folder.error ?? `${plural(folder.files, "file", "files")}, ${plural(folder.chunks, "chunk", "chunks")}`;
    rows.push([`Folder ${folder.root}`, value]);
  }
  // `indexing` is shown above; null means "none" (no query timed yet, no job).
  const metrics = Object.entries(answer.metrics ?? {}).filter(([key]) => key !== "indexing");
  for (const [key, value] of flatten(Object.fromEntries(metrics), "")) {
    rows.push([key, value]);
  }
  return rows;
}

function flatten(obj: Record<string, unknown>, prefix: string): [string, string][] {
  const out: [string, string][] = [];
  for (const [key, value] of Object.entries(obj)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      out.push(...flatten(value as Record<string, unknown>, name));
    } else if (value === null || value === undefined) {
      out.push([name, "none"]);
    } else if (Array.isArray(value)) {
      out.push([name, value.length === 0 ? "none" : value.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(", ")]);
    } else if (typeof value === "number") {
      out.push([name, Number.isInteger(value) ? count(value) : String(Math.round(value * 1000) / 1000)]);
    } else {
      out.push([name, typeof value === "string" ? value : JSON.stringify(value)]);
    }
  }
  return out;
}
