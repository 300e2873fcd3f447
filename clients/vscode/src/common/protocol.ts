/**
 * The server-facing half of the extension: typed wrappers around the server's
 * `workspace/executeCommand` commands. It imports nothing from `vscode`, so the
 * end-to-end test drives exactly this code against the real `kenning lsp`.
 */
import { CancellationTokenSource, type CancellationToken } from "vscode-jsonrpc";
import { SERVER_COMMANDS } from "./ids";

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface SearchResult {
  uri: string;
  range: Range;
  symbol: string | null;
  kind: string;
  language: string;
  score: number;
  snippet: string;
}

export interface SearchAnswer {
  results: SearchResult[];
  took_ms: number;
  /** What the user should know about these results, e.g. "no embedding model loaded: lexical results only". */
  notes: string[];
}

export interface SearchArgs {
  query: string;
  k?: number;
  lang?: string;
  glob?: string[];
  mode?: "hybrid" | "vector" | "lexical";
}

/** Where `kenning.similar` and `kenning.matchTemplates` look: a cursor or a selection. */
export type Target = { uri: string; position: Position } | { uri: string; range: Range };

export interface TemplateMatch {
  id: string;
  name: string;
  language: string;
  score: number;
  description: string;
}

export interface MatchTemplatesAnswer {
  matches: TemplateMatch[];
}

export interface ReindexAnswer {
  files: number;
  chunks: number;
  took_s: number;
  /** Files re-read and chunks embedded by this run. */
  changed: number;
  embedded: number;
  /** Chunks still without a vector (a cancelled run leaves some). */
  pending: number;
  cancelled: boolean;
}

/** One workspace folder in `kenning.status`; a folder whose index failed to open has only `error`. */
export interface FolderStatus {
  root: string;
  files: number;
  chunks: number;
  pending: number;
  error?: string;
}

export interface StatusAnswer {
  files: number;
  chunks: number;
  /** Chunks not embedded yet (not files): semantic search misses them until they are. */
  pending: number;
  /** Chunks with a vector; `embedded + pending == chunks`. */
  embedded: number;
  skipped: number;
  /** Empty while the model is still loading (or failed to load, see `modelError`). */
  model: string;
  device: string;
  /** Why no embedding model is loaded; search is lexical only meanwhile. */
  modelError?: string;
  /** The index job running now (e.g. `refresh:/home/u/shop`), or undefined when idle. */
  indexing?: string;
  /** Another process (a `kenning index` in a terminal) holds a folder's index; this server waits for it. */
  indexingBy?: { root: string; pid?: number; command?: string };
  metrics?: Record<string, unknown>;
  folders: FolderStatus[];
}

/**
 * What both a `LanguageClient` and a bare `vscode-jsonrpc` connection offer.
 * The token parameter is typed loosely because the two libraries ship their own
 * (structurally identical) CancellationToken types.
 */
export interface Requester {
  sendRequest<R>(method: string, params: unknown, token?: CancellationToken): Promise<R>;
}

/** A server answer that did not have the promised shape. */
export class ProtocolError extends Error {}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function expectNumber(obj: Record<string, unknown>, key: string, where: string): number {
  const value = obj[key];
  if (typeof value !== "number") {
    throw new ProtocolError(`${where}: expected a number in "${key}", got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkRange(value: unknown, where: string): Range {
  const ok = (p: unknown): boolean =>
    isObject(p) && typeof p.line === "number" && typeof p.character === "number";
  if (!isObject(value) || !ok(value.start) || !ok(value.end)) {
    throw new ProtocolError(`${where}: expected an LSP range, got ${JSON.stringify(value)}`);
  }
  return value as unknown as Range;
}

/** Checks a `kenning.search` / `kenning.similar` answer, so a bad one fails loudly here. */
export function checkSearchAnswer(value: unknown, command: string): SearchAnswer {
  if (!isObject(value) || !Array.isArray(value.results)) {
    throw new ProtocolError(`${command}: expected {results: [...]}, got ${JSON.stringify(value)}`);
  }
  const results = value.results.map((r: unknown, i: number): SearchResult => {
    const where = `${command} result ${i}`;
    if (!isObject(r) || typeof r.uri !== "string") {
      throw new ProtocolError(`${where}: expected an object with a uri`);
    }
    return {
      uri: r.uri,
      range: checkRange(r.range, where),
      symbol: typeof r.symbol === "string" ? r.symbol : null,
      kind: typeof r.kind === "string" ? r.kind : "",
      language: typeof r.language === "string" ? r.language : "",
      score: expectNumber(r, "score", where),
      snippet: typeof r.snippet === "string" ? r.snippet : "",
    };
  });
  const took = typeof value.took_ms === "number" ? value.took_ms : 0;
  const notes = Array.isArray(value.notes) ? value.notes.filter((n): n is string => typeof n === "string") : [];
  return { results, took_ms: took, notes };
}

function checkMatches(value: unknown): MatchTemplatesAnswer {
  if (!isObject(value) || !Array.isArray(value.matches)) {
    throw new ProtocolError(`kenning.matchTemplates: expected {matches: [...]}, got ${JSON.stringify(value)}`);
  }
  return {
    matches: value.matches.map((m: unknown, i: number): TemplateMatch => {
      if (!isObject(m) || typeof m.id !== "string") {
        throw new ProtocolError(`kenning.matchTemplates match ${i}: expected an object with an id`);
      }
      return {
        id: m.id,
        name: typeof m.name === "string" ? m.name : m.id,
        // `languages` (a list) is the CLI's shape; take it too.
        language: typeof m.language === "string" ? m.language : Array.isArray(m.languages) ? m.languages.filter((l) => typeof l === "string").join(", ") : "",
        score: typeof m.score === "number" ? m.score : 0,
        description: typeof m.description === "string" ? m.description : "",
      };
    }),
  };
}

const numberOr = (value: unknown, fallback: number): number => (typeof value === "number" ? value : fallback);
const nonEmpty = (value: unknown): string | undefined => (typeof value === "string" && value !== "" ? value : undefined);

function checkFolder(value: unknown, i: number): FolderStatus {
  if (!isObject(value)) {
    throw new ProtocolError(`kenning.status folder ${i}: expected an object, got ${JSON.stringify(value)}`);
  }
  const folder: FolderStatus = {
    root: typeof value.root === "string" ? value.root : "",
    files: numberOr(value.files, 0),
    chunks: numberOr(value.chunks, 0),
    pending: numberOr(value.pending, 0),
  };
  const error = nonEmpty(value.error);
  return error === undefined ? folder : { ...folder, error };
}

export function checkStatusAnswer(value: unknown): StatusAnswer {
  if (!isObject(value)) {
    throw new ProtocolError(`kenning.status: expected an object, got ${JSON.stringify(value)}`);
  }
  const where = "kenning.status";
  const files = expectNumber(value, "files", where);
  const chunks = expectNumber(value, "chunks", where);
  const pending = expectNumber(value, "pending", where);
  const metrics = isObject(value.metrics) ? value.metrics : undefined;
  // The server sends null for "nothing" (no model yet, no job running).
  const answer: StatusAnswer = {
    files,
    chunks,
    pending,
    embedded: numberOr(value.embedded, chunks - pending),
    skipped: numberOr(value.skipped, 0),
    model: nonEmpty(value.model) ?? "",
    device: nonEmpty(value.device) ?? "",
    metrics,
    folders: Array.isArray(value.folders) ? value.folders.map(checkFolder) : [],
  };
  const modelError = nonEmpty(value.model_error);
  if (modelError !== undefined) {
    answer.modelError = modelError;
  }
  const indexing = nonEmpty(metrics?.indexing);
  if (indexing !== undefined) {
    answer.indexing = indexing;
  }
  const by = value.indexing_by;
  if (isObject(by)) {
    answer.indexingBy = {
      root: typeof by.root === "string" ? by.root : "",
      ...(typeof by.pid === "number" ? { pid: by.pid } : {}),
      ...(nonEmpty(by.command) !== undefined ? { command: nonEmpty(by.command) } : {}),
    };
  }
  return answer;
}

function checkReindexAnswer(value: unknown): ReindexAnswer {
  if (!isObject(value)) {
    throw new ProtocolError(`kenning.reindex: expected an object, got ${JSON.stringify(value)}`);
  }
  const where = "kenning.reindex";
  return {
    files: expectNumber(value, "files", where),
    chunks: expectNumber(value, "chunks", where),
    took_s: numberOr(value.took_s, 0),
    changed: numberOr(value.changed, 0),
    embedded: numberOr(value.embedded, 0),
    pending: numberOr(value.pending, 0),
    cancelled: value.cancelled === true,
  };
}

function isPosition(value: unknown): value is Position {
  return isObject(value) && typeof value.line === "number" && typeof value.character === "number";
}

/**
 * The target in the arguments of a `kenning.similar` command that the server
 * put in a code action ("Find similar code"), or undefined when they are not one.
 */
export function targetFromArgs(args: readonly unknown[] | undefined): Target | undefined {
  const arg: unknown = args?.[0];
  if (args?.length !== 1 || !isObject(arg) || typeof arg.uri !== "string") {
    return undefined;
  }
  if (isObject(arg.range) && isPosition(arg.range.start) && isPosition(arg.range.end)) {
    return { uri: arg.uri, range: { start: arg.range.start, end: arg.range.end } };
  }
  if (isPosition(arg.position)) {
    return { uri: arg.uri, position: arg.position };
  }
  return undefined;
}

/** Typed calls to the server's commands; `signal` cancels the request on the wire. */
export class KenningServer {
  constructor(private readonly requester: Requester) {}

  private async execute(command: string, args: unknown, signal?: AbortSignal): Promise<unknown> {
    const params = { command, arguments: [args] };
    if (signal === undefined) {
      return this.requester.sendRequest("workspace/executeCommand", params);
    }
    const source = new CancellationTokenSource();
    const cancel = (): void => source.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    try {
      return await this.requester.sendRequest("workspace/executeCommand", params, source.token);
    } finally {
      signal.removeEventListener("abort", cancel);
      source.dispose();
    }
  }

  async search(args: SearchArgs, signal?: AbortSignal): Promise<SearchAnswer> {
    const answer = await this.execute(SERVER_COMMANDS.search, args, signal);
    return checkSearchAnswer(answer, SERVER_COMMANDS.search);
  }

  async similar(target: Target, k?: number, signal?: AbortSignal): Promise<SearchAnswer> {
    const args = k === undefined ? target : { ...target, k };
    const answer = await this.execute(SERVER_COMMANDS.similar, args, signal);
    return checkSearchAnswer(answer, SERVER_COMMANDS.similar);
  }

  async matchTemplates(target: Target, signal?: AbortSignal): Promise<MatchTemplatesAnswer> {
    return checkMatches(await this.execute(SERVER_COMMANDS.matchTemplates, target, signal));
  }

  /** The server applies the edit itself, through `workspace/applyEdit`. */
  async applyTemplate(uri: string, position: Position, templateId: string): Promise<void> {
    await this.execute(SERVER_COMMANDS.applyTemplate, { uri, position, templateId });
  }

  /** Aborting `signal` stops this request's share of the work (the server goes on with what others wait for). */
  async reindex(signal?: AbortSignal): Promise<ReindexAnswer> {
    return checkReindexAnswer(await this.execute(SERVER_COMMANDS.reindex, {}, signal));
  }

  async status(signal?: AbortSignal): Promise<StatusAnswer> {
    return checkStatusAnswer(await this.execute(SERVER_COMMANDS.status, {}, signal));
  }
}
