/**
 * Waiting for conditions without timed assertions: poll until a condition
 * holds, and fail loudly, naming what was awaited and what was last seen,
 * when a deadline passes. A deadline is a bound on a hang, never the thing
 * under test.
 */
import { setTimeout as sleep } from "node:timers/promises"

export class WaitTimeout extends Error {
  override readonly name = "WaitTimeout"
}

export interface WaitOptions {
  /** Give up after this long (default 20 s). */
  readonly timeoutMs?: number
  /** Pause between two checks (default 50 ms). */
  readonly intervalMs?: number
}

/**
 * Calls `check` until it returns something other than `undefined` (or `false`),
 * and resolves to that. `check` may throw while the condition cannot be
 * evaluated yet (a server restarting); the last error is reported on timeout.
 * `describe` says what is awaited, and may look at the last state for the message.
 */
export const waitFor = async <T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitOptions = {}
): Promise<T> => {
  const timeoutMs = options.timeoutMs ?? 20_000
  const intervalMs = options.intervalMs ?? 50
  const deadline = Date.now() + timeoutMs
  let lastError: unknown = null
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
      lastError = null
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline)
      throw new WaitTimeout(
        `Timed out after ${timeoutMs} ms waiting for ${what}` +
          (lastError === null ? "." : `; the last check threw: ${String(lastError)}`)
      )
    await sleep(intervalMs)
  }
}

/** Resolves `promise`, or rejects naming `what` when it has not settled within `timeoutMs`. */
export const within = async <T>(what: string, timeoutMs: number, promise: Promise<T>): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new WaitTimeout(`${what} did not finish within ${timeoutMs} ms.`)),
      timeoutMs
    )
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
