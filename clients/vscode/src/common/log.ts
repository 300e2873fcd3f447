/** The one log channel's level, which follows `kenning.trace.server`. */

export type Level = "error" | "warn" | "info" | "debug" | "trace";
export type TraceSetting = "off" | "messages" | "verbose";

const ORDER: Level[] = ["error", "warn", "info", "debug", "trace"];

/** off -> info, messages -> debug, verbose -> trace. */
export function levelForTrace(trace: string | undefined): Level {
  switch (trace) {
    case "verbose":
      return "trace";
    case "messages":
      return "debug";
    default:
      return "info";
  }
}

export class Logger {
  constructor(
    private readonly append: (line: string) => void,
    public level: Level = "info",
    private readonly now: () => Date = () => new Date(),
  ) {}

  enabled(level: Level): boolean {
    return ORDER.indexOf(level) <= ORDER.indexOf(this.level);
  }

  log(level: Level, message: string): void {
    if (this.enabled(level)) {
      const time = this.now().toISOString().slice(11, 23);
      this.append(`[${level.padEnd(5)} ${time}] ${message}`);
    }
  }

  error(message: string, error?: unknown): void {
    let detail = "";
    if (error instanceof Error) {
      detail = `: ${error.stack ?? error.message}`;
    } else if (error !== undefined) {
      detail = `: ${typeof error === "string" ? error : JSON.stringify(error)}`;
    }
    this.log("error", message + detail);
  }

  warn(message: string): void {
    this.log("warn", message);
  }

  info(message: string): void {
    this.log("info", message);
  }

  debug(message: string): void {
    this.log("debug", message);
  }

  trace(message: string): void {
    this.log("trace", message);
  }
}
