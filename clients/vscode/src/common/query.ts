/**
 * The Search Code box's filter syntax: `lang:python glob:src/** read config`.
 * Filters may stand anywhere; `glob:` may repeat. Everything else is the query.
 */
import type { SearchArgs } from "./protocol";

export interface ParsedQuery {
  query: string;
  lang?: string;
  glob: string[];
}

const FILTER = /^(lang|language|glob):(\S+)$/i;

export function parseQuery(text: string): ParsedQuery {
  const words: string[] = [];
  const parsed: ParsedQuery = { query: "", glob: [] };
  for (const word of text.trim().split(/\s+/)) {
    const m = FILTER.exec(word);
    if (m === null) {
      if (word !== "") {
        words.push(word);
      }
    } else if (m[1].toLowerCase() === "glob") {
      parsed.glob.push(m[2]);
    } else {
      parsed.lang = m[2].toLowerCase();
    }
  }
  parsed.query = words.join(" ");
  return parsed;
}

/** The `kenning.search` arguments for a parsed query. */
export function toSearchArgs(parsed: ParsedQuery, k?: number): SearchArgs {
  const args: SearchArgs = { query: parsed.query };
  if (k !== undefined) {
    args.k = k;
  }
  if (parsed.lang !== undefined) {
    args.lang = parsed.lang;
  }
  if (parsed.glob.length > 0) {
    args.glob = parsed.glob;
  }
  return args;
}

/**
 * Sets (or replaces) one filter in the box's text, keeping the rest; used by the
 * QuickPick's filter buttons so that the prefix syntax stays the one truth.
 */
export function withFilter(text: string, name: "lang" | "glob", value: string): string {
  const kept = text
    .trim()
    .split(/\s+/)
    .filter((w) => w !== "" && !(name === "lang" && /^(lang|language):/i.test(w)));
  return [`${name}:${value}`, ...kept].join(" ") + " ";
}
