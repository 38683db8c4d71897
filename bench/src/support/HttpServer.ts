/**
 * An engine served over HTTP as a user deploys it: the transport's `batonApp`
 * on @hono/node-server, on an ephemeral port of 127.0.0.1, with an operator
 * key the bench's clients present.
 */
import { randomBytes } from "node:crypto"
import type { AddressInfo } from "node:net"
import { type BatonEngine, Engine } from "@baton/core"
import { batonApp, type SseOptions } from "@baton/transport-http"
import { serve } from "@hono/node-server"

export interface BatonHttp {
  /** `http://127.0.0.1:<port>` */
  readonly baseUrl: string
  /** `Authorization: Bearer <key>` of the operator (customer `default`, every scope). */
  readonly key: string
  readonly close: () => Promise<void>
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/** A fresh well-formed key: `key_<24 alnum>:<43 base64url>`. */
const newKey = (): string => {
  const id = Array.from(randomBytes(24), (b) => ALNUM[b % ALNUM.length]).join("")
  return `key_${id}:${randomBytes(32).toString("base64url")}`
}

export const serveBaton = async (engine: BatonEngine, sse: SseOptions = {}): Promise<BatonHttp> => {
  const key = newKey()
  await engine.run(Engine.ensureKey(key, "default"))
  const app = batonApp(engine, { sse })
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve, reject) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
        resolve({ server: s, port: info.port })
      )
      s.once("error", reject)
    }
  )
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    key,
    close: async () => {
      if ("closeAllConnections" in server) server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
