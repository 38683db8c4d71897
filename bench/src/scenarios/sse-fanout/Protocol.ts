/**
 * The messages between the scenario (parent) and an SSE server process
 * (child) over Node's IPC channel. The servers run in a process of their own
 * so that their memory is theirs alone, not the 10,000 clients'.
 */

export type ToServer =
  /** Collect garbage twice, then report memory. */
  | { readonly type: "memory" }
  /** Send `count` events `intervalMs` apart; each carries its emit time in `content_delta`. */
  | { readonly type: "emit"; readonly count: number; readonly intervalMs: number }
  | { readonly type: "stop" }

export interface MemoryReport {
  readonly type: "memory"
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
}

export type FromServer =
  /** Listening: clients open `url` with `headers`. */
  | { readonly type: "ready"; readonly url: string; readonly headers: Readonly<Record<string, string>> }
  | MemoryReport
  /** Every requested event was sent (Baton: handed to progress; bare: written). */
  | { readonly type: "emitted" }
  /** Storage statements per event the server ran while emitting (for all its subscribers). */
  | { readonly type: "round-trips"; readonly count: number }

/** Matches the emit time in any frame of either server. */
export const EMITTED_AT = /"content_delta":"(\d+(?:\.\d+)?)"/

export const memoryReport = (): MemoryReport => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  return { type: "memory", rss: m.rss, heapUsed: m.heapUsed, external: m.external }
}

/** Sends a message to the parent (a no-op when not started with an IPC channel). */
export const toParent = (message: FromServer): void => {
  process.send?.(message)
}

/** Calls `handle` with every message from the parent. */
export const onParentMessage = (handle: (message: ToServer) => void): void => {
  process.on("message", (message) => handle(message as ToServer))
}
