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
}

export interface StatusAnswer {
  files: number;
  chunks: number;
  pending: number;
  model: string;
  device: string;
  metrics?: Record<string, unknown>;
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
  return { results, took_ms: took };
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
        language: typeof m.language === "string" ? m.language : "",
        score: typeof m.score === "number" ? m.score : 0,
        description: typeof m.description === "string" ? m.description : "",
      };
    }),
  };
}

export function checkStatusAnswer(value: unknown): StatusAnswer {
  if (!isObject(value)) {
    throw new ProtocolError(`kenning.status: expected an object, got ${JSON.stringify(value)}`);
  }
  const where = "kenning.status";
  return {
    files: expectNumber(value, "files", where),
    chunks: expectNumber(value, "chunks", where),
    pending: expectNumber(value, "pending", where),
    model: typeof value.model === "string" ? value.model : "",
    device: typeof value.device === "string" ? value.device : "",
    metrics: isObject(value.metrics) ? value.metrics : undefined,
  };
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

  async reindex(): Promise<ReindexAnswer> {
    const answer = await this.execute(SERVER_COMMANDS.reindex, {});
    if (!isObject(answer)) {
      throw new ProtocolError(`kenning.reindex: expected an object, got ${JSON.stringify(answer)}`);
    }
    return {
      files: expectNumber(answer, "files", "kenning.reindex"),
      chunks: expectNumber(answer, "chunks", "kenning.reindex"),
      took_s: typeof answer.took_s === "number" ? answer.took_s : 0,
    };
  }

  async status(signal?: AbortSignal): Promise<StatusAnswer> {
    return checkStatusAnswer(await this.execute(SERVER_COMMANDS.status, {}, signal));
  }
}
