import assert from "node:assert/strict";
import { test } from "node:test";
import { RestartQueue } from "../../src/common/restart";

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test("restarts asked for during a restart are queued once", async () => {
  const started: number[] = [];
  const finishers: (() => void)[] = [];
  const queue = new RestartQueue(() => {
    started.push(started.length + 1);
    return new Promise<void>((resolve) => finishers.push(resolve));
  });
  const first = queue.request();
  const second = queue.request();
  const third = queue.request();
  const fourth = queue.request();
  assert.equal(second, third, "later asks share the queued restart");
  assert.equal(third, fourth);
  assert.deepEqual(started, [1], "nothing else runs while the first restart runs");
  finishers[0]();
  await first;
  await tick();
  assert.deepEqual(started, [1, 2], "exactly one queued restart follows");
  finishers[1]();
  await second;
  await tick();
  assert.deepEqual(started, [1, 2]);
  // Idle again: a new ask starts at once.
  const fifth = queue.request();
  assert.deepEqual(started, [1, 2, 3]);
  finishers[2]();
  await fifth;
});

test("a failed restart still lets the queued one run", async () => {
  let calls = 0;
  const queue = new RestartQueue(async () => {
    calls++;
    await tick();
    if (calls === 1) {
      throw new Error("spawn failed");
    }
  });
  const first = queue.request();
  const second = queue.request();
  await assert.rejects(first, /spawn failed/);
  await second;
  assert.equal(calls, 2);
});
