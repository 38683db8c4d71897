/**
 * Waits for a condition a test cannot be told about directly (a process came
 * back, a background write happened), polling it; fails loudly with what it
 * waited for instead of hanging. Never a timing assertion: only a deadline.
 */
export const waitUntil = async (
  what: string,
  check: () => boolean | Promise<boolean>,
  options: { readonly timeoutMs?: number; readonly intervalMs?: number } = {}
): Promise<void> => {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000)
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10))
  }
}
