import assert from "node:assert/strict";
import { test } from "node:test";
import { LiveQuery, type Timers } from "../../src/common/live";

/** Timers the test moves by hand. */
class FakeClock implements Timers {
  now = 0;
  private next = 1;
  private pending = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.pending].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= this.now) {
        this.pending.delete(id);
        t.fn();
      }
    }
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function harness() {
  const clock = new FakeClock();
  const runs: { query: string; signal: AbortSignal; answer: Deferred<string> }[] = [];
  const results: [string, string][] = [];
  const errors: [string, unknown][] = [];
  const busy: boolean[] = [];
  const live = new LiveQuery<string, string>({
    run: (query, signal) => {
      const answer = deferred<string>();
      runs.push({ query, signal, answer });
      return answer.promise;
    },
    onResult: (q, r) => results.push([q, r]),
    onError: (q, e) => errors.push([q, e]),
    onBusy: (b) => busy.push(b),
    delayMs: 100,
    timers: clock,
  });
  return { clock, runs, results, errors, busy, live };
}

test("keystrokes within the delay make one request, for the last text", async () => {
  const h = harness();
  h.live.update("r");
  h.clock.advance(50);
  h.live.update("re");
  h.clock.advance(50);
  h.live.update("read");
  h.clock.advance(99);
  assert.equal(h.runs.length, 0);
  h.clock.advance(1);
  assert.deepEqual(h.runs.map((r) => r.query), ["read"]);
  h.runs[0].answer.resolve("A");
  await tick();
  assert.deepEqual(h.results, [["read", "A"]]);
  assert.deepEqual(h.busy, [true, false]);
});

test("a slow stale answer is dropped and its request cancelled", async () => {
  const h = harness();
  h.live.update("rea");
  h.clock.advance(100);
  h.live.update("read json");
  h.clock.advance(100);
  assert.equal(h.runs.length, 2);
  assert.equal(h.runs[0].signal.aborted, true, "the older request is cancelled on the wire");
  assert.equal(h.runs[1].signal.aborted, false);
  h.runs[1].answer.resolve("new");
  await tick();
  h.runs[0].answer.resolve("old"); // arrives last, must not overwrite
  await tick();
  assert.deepEqual(h.results, [["read json", "new"]]);
});

test("errors of stale requests are swallowed; the newest one's error is reported", async () => {
  const h = harness();
  h.live.update("a");
  h.clock.advance(100);
  h.live.update("ab");
  h.clock.advance(100);
  h.runs[0].answer.reject(new Error("cancelled"));
  h.runs[1].answer.reject(new Error("server down"));
  await tick();
  assert.equal(h.errors.length, 1);
  assert.equal(h.errors[0][0], "ab");
  assert.equal((h.errors[0][1] as Error).message, "server down");
  assert.equal(h.busy.at(-1), false);
});

test("now() skips the delay and supersedes a waiting keystroke", async () => {
  const h = harness();
  h.live.update("typed");
  void h.live.now("remembered");
  h.clock.advance(500);
  assert.deepEqual(h.runs.map((r) => r.query), ["remembered"]);
  h.runs[0].answer.resolve("R");
  await tick();
  assert.deepEqual(h.results, [["remembered", "R"]]);
});

test("cancel and dispose stop delivery", async () => {
  const h = harness();
  h.live.update("x");
  h.clock.advance(100);
  h.live.cancel();
  assert.equal(h.runs[0].signal.aborted, true);
  h.runs[0].answer.resolve("late");
  await tick();
  assert.deepEqual(h.results, []);
  h.live.dispose();
  h.live.update("y");
  h.clock.advance(1000);
  assert.equal(h.runs.length, 1, "nothing runs after dispose");
});
