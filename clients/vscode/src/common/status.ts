/** The index state shown in the status bar, from `$/progress` and `kenning.status`. */
import type { StatusAnswer } from "./protocol";

export type IndexState =
  | { kind: "starting" }
  | { kind: "indexing"; percentage?: number; message?: string }
  | { kind: "ready"; files: number; chunks: number }
  | { kind: "error"; message: string }
  | { kind: "stopped" };

export interface StatusView {
  text: string;
  tooltip: string;
  severity: "info" | "warning" | "error";
  busy: boolean;
}

/** The `kenning.status` answer as an index state: pending work means indexing. */
export function stateFromStatus(answer: StatusAnswer): IndexState {
  if (answer.pending > 0) {
    const total = answer.files + answer.pending;
    const percentage = total > 0 ? Math.floor((100 * answer.files) / total) : undefined;
    return { kind: "indexing", percentage, message: `${answer.pending} files to go` };
  }
  return { kind: "ready", files: answer.files, chunks: answer.chunks };
}

/** Folds one `$/progress` value into the state (WorkDoneProgressBegin/Report/End). */
export function stateFromProgress(
  value: { kind: string; percentage?: number; message?: string; title?: string },
  previous: IndexState,
): IndexState {
  if (value.kind === "end") {
    // The chunk count comes from the next kenning.status; keep the old one meanwhile.
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
    case "ready":
      return {
        text: `$(search) Kenning ${count(state.chunks)}`,
        tooltip: `Kenning: index ready, ${count(state.chunks)} chunks in ${count(state.files)} files`,
        severity: "info",
        busy: false,
      };
    case "error":
      return { text: "$(error) Kenning", tooltip: `Kenning: ${state.message}`, severity: "error", busy: false };
    case "stopped":
      return { text: "$(circle-slash) Kenning", tooltip: "Kenning: server stopped", severity: "warning", busy: false };
  }
}

/** The `Kenning: Show Index Status` rows: one `[label, value]` per figure. */
export function statusRows(answer: StatusAnswer): [string, string][] {
  const rows: [string, string][] = [
    ["Files", count(answer.files)],
    ["Chunks", count(answer.chunks)],
    ["Pending files", count(answer.pending)],
    ["Model", answer.model || "(default)"],
    ["Device", answer.device || "(unknown)"],
  ];
  for (const [key, value] of flatten(answer.metrics ?? {}, "")) {
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
    } else if (typeof value === "number") {
      out.push([name, Number.isInteger(value) ? count(value) : String(Math.round(value * 1000) / 1000)]);
    } else {
      out.push([name, typeof value === "string" ? value : JSON.stringify(value)]);
    }
  }
  return out;
}
