/**
 * Serialises server restarts. A restart asked for while one runs is queued
 * once; any further asks fold into that queued one, which will read the
 * newest settings anyway.
 */
export class RestartQueue {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(private readonly restart: () => Promise<void>) {}

  request(): Promise<void> {
    if (this.running === undefined) {
      this.running = this.start();
      return this.running;
    }
    if (this.queued === undefined) {
      const current = this.running;
      // The queued restart runs whether or not the current one failed.
      this.queued = current.then(
        () => undefined,
        () => undefined,
      ).then(() => {
        this.queued = undefined;
        this.running = this.start();
        return this.running;
      });
    }
    return this.queued;
  }

  private async start(): Promise<void> {
    try {
      await this.restart();
    } finally {
      this.running = undefined;
    }
  }
}
