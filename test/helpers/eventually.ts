/**
 * Retries `check` until it holds, then returns; the assertions that matter come after it. The
 * bound (30 s by default) is a safety net so a broken build fails instead of hanging, never a
 * timing expectation: a loaded 2-core CI machine can take seconds to start a worker thread.
 * A check that throws counts as "not yet".
 */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await Promise.resolve().then(check).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} (${ms} ms)`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
