/** Command ids: the extension's palette commands and the server's own commands. */

/** Palette commands the extension registers (package.json `contributes.commands`). */
export const COMMANDS = {
  searchCode: "kenning.searchCode",
  findSimilar: "kenning.findSimilar",
  insertTemplate: "kenning.insertTemplate",
  reindexWorkspace: "kenning.reindexWorkspace",
  showStatus: "kenning.showStatus",
  showLogs: "kenning.showLogs",
  restart: "kenning.restart",
} as const;

/**
 * Commands the language server serves through `workspace/executeCommand`.
 * vscode-languageclient registers these as VS Code commands itself, so the
 * extension must never register them.
 */
export const SERVER_COMMANDS = {
  search: "kenning.search",
  similar: "kenning.similar",
  matchTemplates: "kenning.matchTemplates",
  applyTemplate: "kenning.applyTemplate",
  reindex: "kenning.reindex",
  status: "kenning.status",
} as const;

/** The server's notification of its `kenning.status` payload, sent when it changes. */
export const STATUS_NOTIFICATION = "kenning/status";

/** The configuration section, and the client id that makes `kenning.trace.server` work. */
export const SECTION = "kenning";
