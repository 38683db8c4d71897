/** Retry timing shared by the HTTP client's requests and its event-stream reconnects. */

/** Statuses worth another try: rate limited, or a gateway / the store briefly unavailable. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504])

/** The longest `retry-after` the client waits out on its own; a longer one is the caller's to decide. */
export const MAX_RETRY_AFTER_MS = 60_000

const MAX_BACKOFF_MS = 30_000

/**
 * `retry-after` in seconds: delay-seconds (fractions accepted) or an HTTP date
 * (seconds from now, never negative); null when absent or unreadable.
 */
export const parseRetryAfter = (header: string | null, now: number = Date.now()): number | null => {
  if (header === null || header.trim() === "") return null
  const trimmed = header.trim()
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return Number(trimmed)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000)
}

/**
 * Exponential backoff with jitter before retry number `attempt + 1`: half of
 * `baseMs * 2^attempt` (capped at 30 s) fixed, the other half random, so
 * clients that failed together do not come back together.
 */
export const backoffMs = (attempt: number, baseMs: number): number => {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** attempt)
  return ceiling / 2 + (Math.random() * ceiling) / 2
}

/**
 * The wait before the next try: the server's `retry-after` when it sent one
 * (null when that is longer than the client waits on its own), else backoff.
 */
export const retryDelayMs = (
  attempt: number,
  baseMs: number,
  retryAfterSeconds: number | null
): number | null => {
  if (retryAfterSeconds === null) return backoffMs(attempt, baseMs)
  const ms = retryAfterSeconds * 1000
  return ms > MAX_RETRY_AFTER_MS ? null : ms
}

/** Waits `ms`, or less when `signal` aborts first (it never rejects). */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted === true) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener("abort", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener("abort", done, { once: true })
  })
