/**
 * Search as you type: a debounced runner that keeps only the newest answer.
 *
 * Each keystroke restarts the delay; when it fires, the previous request is
 * cancelled and a new one starts. An answer is delivered only if no newer
 * query was issued after it, so a slow answer to "rea" can never overwrite
 * the answer to "read json".
 */

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface LiveQueryOptions<Q, R> {
  /** Runs one query; should stop work when the signal aborts. */
  run: (query: Q, signal: AbortSignal) => Promise<R>;
  /** The newest query's answer. */
  onResult: (query: Q, result: R) => void;
  /** The newest query's failure (cancellations of stale queries are never reported). */
  onError: (query: Q, error: unknown) => void;
  /** Called with true when a request starts and false when the newest one settles. */
  onBusy?: (busy: boolean) => void;
  delayMs: number;
  timers?: Timers;
}

export class LiveQuery<Q, R> {
  private timer: unknown;
  private issued = 0;
  private inFlight: AbortController | undefined;
  private disposed = false;
  private readonly timers: Timers;

  constructor(private readonly options: LiveQueryOptions<Q, R>) {
    this.timers = options.timers ?? realTimers;
  }

  /** A new query from the user; it runs after the delay unless another comes first. */
  update(query: Q): void {
    if (this.disposed) {
      return;
    }
    this.clearTimer();
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      void this.fire(query);
    }, this.options.delayMs);
  }

  /** Runs a query now, skipping the delay (e.g. the remembered query on open). */
  now(query: Q): Promise<void> {
    this.clearTimer();
    return this.fire(query);
  }

  /** Drops whatever is waiting or running; nothing is delivered afterwards. */
  cancel(): void {
    this.clearTimer();
    this.issued++;
    this.abortInFlight();
    this.options.onBusy?.(false);
  }

  dispose(): void {
    this.cancel();
    this.disposed = true;
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      this.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private abortInFlight(): void {
    this.inFlight?.abort();
    this.inFlight = undefined;
  }

  private async fire(query: Q): Promise<void> {
    if (this.disposed) {
      return;
    }
    const ticket = ++this.issued;
    this.abortInFlight();
    const controller = new AbortController();
    this.inFlight = controller;
    this.options.onBusy?.(true);
    let result: R;
    try {
      result = await this.options.run(query, controller.signal);
    } catch (error) {
      if (ticket === this.issued && !this.disposed) {
        this.inFlight = undefined;
        this.options.onBusy?.(false);
        this.options.onError(query, error);
      }
      return;
    }
    if (ticket === this.issued && !this.disposed) {
      this.inFlight = undefined;
      this.options.onBusy?.(false);
      this.options.onResult(query, result);
    }
  }
}
