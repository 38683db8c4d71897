import type { BatonEngine } from "@baton/core"
import { Hono } from "hono"

export interface BatonRoutesOptions {
  /** Largest accepted request body (default 1 MiB → 413 BODY_TOO_LARGE). */
  readonly bodyLimitBytes?: number
  /** Origins allowed to call from a browser; empty (default) turns CORS off. */
  readonly corsOrigins?: ReadonlyArray<string>
  readonly sse?: {
    /** `: ping` comment interval (default 15 000 ms). */
    readonly heartbeatMs?: number
    /** Bytes queued for one slow reader before the server ends its stream (default 1 MiB). */
    readonly bufferLimitBytes?: number
    /** The `retry:` hint sent first (default 2000 ms). */
    readonly retryMs?: number
  }
}

/** Every endpoint of SPEC §4, to mount under `/v1`: `app.route("/v1", batonRoutes(engine))`. */
export const batonRoutes = (_engine: BatonEngine, _options: BatonRoutesOptions = {}): Hono => new Hono()

/** `GET /healthz` (process up) and `GET /readyz` (storage reachable), no auth. */
export const healthRoutes = (_engine: BatonEngine): Hono => new Hono()
