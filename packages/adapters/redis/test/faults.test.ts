/**
 * Redis faults in the middle of a run and of an SSE stream: the script cache
 * is flushed (every script must come back by NOSCRIPT recovery) and the
 * engine's connections, command and pub/sub alike, are killed (they must
 * reconnect, resubscribe and re-read). The run completes, the stream resumes,
 * and the log the client saw is gapless and equal to the stored one.
 */

import { createHash, randomBytes } from "node:crypto"
import type { AddressInfo } from "node:net"
import { waitUntil } from "@baton/adapter-conformance"
import { redisStorage } from "@baton/adapter-redis"
import { type BatonEngine, createEngine, Engine, type RunContext, type RunEvent } from "@baton/core"
import { batonApp, createHttpClient } from "@baton/transport-http"
import { serve } from "@hono/node-server"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Lua from "../src/lua/index.js"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"

const location = await findRedis()

const WAIT_MS = 15_000

const sha1 = (text: string) => createHash("sha1").update(text).digest("hex")

const startedStep = (events: ReadonlyArray<RunEvent>, name: string) =>
  events.some((e) => e.type === "step.started" && (e.payload.value as { name?: string }).name === name)

const contentOf = (events: ReadonlyArray<RunEvent>) =>
  events
    .filter((e) => e.type === "step.progress")
    .map((e) => String((e.payload.value as { content_delta?: string }).content_delta ?? ""))
    .join("")

class Gate {
  opened = false
  private release: () => void = () => {}
  readonly promise = new Promise<void>((resolve) => {
    this.release = resolve
  })
  open() {
    this.opened = true
    this.release()
  }
}

/** Kills every connection of the adapter (by its client name): the command and the pub/sub ones. */
const killConnections = async (admin: Redis, name: string): Promise<number> => {
  const list = (await admin.client("LIST")) as string
  const ids = list
    .split("\n")
    .filter((line) => {
      const found = / name=(\S*)/.exec(line)?.[1]
      return found === name || found === `${name}:feed`
    })
    .map((line) => /^id=(\d+)/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined)
  for (const id of ids) await admin.client("KILL", "ID", id)
  return ids.length
}

if (location === null) {
  describe("redis faults", () => {
    it.skip("redis not found: set BATON_TEST_REDIS_URL (or start redis on 127.0.0.1:6379)", () => {})
  })
} else {
  describe("redis faults: SCRIPT FLUSH and CLIENT KILL mid-run and mid-stream", () => {
    const prefix = uniquePrefix("faults")
    const connectionName = `baton-faults-${randomBytes(4).toString("hex")}`
    const operatorKey = `key_${randomBytes(12).toString("hex").slice(0, 24)}:${randomBytes(32).toString("base64url")}`
    const admin = new Redis(location.url)
    const gates = { first: new Gate(), second: new Gate() }
    const executions = { draft: 0, middle: 0, last: 0 }
    let engine: BatonEngine
    let server: ReturnType<typeof serve>
    let baseUrl = ""

    const handler = async (run: RunContext) => {
      await run.step("draft", async (step) => {
        executions.draft++
        for (let i = 0; i < 5; i++) step.progress({ content_delta: `a${i} ` })
        return "drafted"
      })
      await run.step("middle", async (step) => {
        executions.middle++
        await gates.first.promise
        for (let i = 0; i < 10; i++) step.progress({ content_delta: `b${i} ` })
        return "middle"
      })
      return run.step("last", async (step) => {
        executions.last++
        await gates.second.promise
        // Slow enough that the next kill lands while these writes are in flight.
        for (let i = 0; i < 30; i++) {
          step.progress({ content_delta: `c${i} ` })
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        return { done: true }
      })
    }

    beforeAll(async () => {
      engine = createEngine({
        storage: redisStorage({ url: location.url, prefix, connectionName, log: () => {} }),
        handlers: { faulty: handler },
        // Polling too slow to hide a broken feed: the stream must move by hints.
        config: { feedPollIntervalMs: 120_000 }
      })
      await engine.run(Engine.ensureKey(operatorKey, "default"))
      await engine.startWorker({
        pollIntervalMs: 5,
        heartbeatMs: 50,
        leaseMs: 3_000,
        retry: { initialDelayMs: 5 }
      })
      const app = batonApp(engine, { sse: { heartbeatMs: 200 } })
      await new Promise<void>((resolve, reject) => {
        server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) => {
          baseUrl = `http://127.0.0.1:${info.port}`
          resolve()
        })
        server.once("error", reject)
      })
    })

    afterAll(async () => {
      gates.first.open()
      gates.second.open()
      if (server !== undefined) {
        if ("closeAllConnections" in server) server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
      await engine?.dispose({ graceMs: 0 })
      await dropPrefix(admin, prefix)
      await admin.quit()
      await location.stop()
    })

    it("completes the run, resumes the stream and keeps the log gapless", async () => {
      const client = createHttpClient({ baseUrl, apiKey: operatorKey, retryBaseMs: 20 })
      const created = await client.createRun(
        { input: { topic: "faults" }, handler: "faulty" },
        { idempotencyKey: `k-${prefix}` }
      )
      const runId = created.run.id
      const seen: RunEvent[] = []
      const streamed = (async () => {
        for await (const event of client.streamEvents(runId)) seen.push(event)
      })()

      // 1. The script cache goes while the run waits inside step "middle": every script
      //    must come back through NOSCRIPT recovery on the live connections.
      await waitUntil("the stream to reach step middle", () => startedStep(seen, "middle"), {
        timeoutMs: WAIT_MS
      })
      await admin.script("FLUSH")
      gates.first.open()
      await waitUntil("the stream to reach step last", () => startedStep(seen, "last"), {
        timeoutMs: WAIT_MS
      })
      expect(await admin.script("EXISTS", sha1(Lua.append))).toEqual([1])

      // 2. Cache and connections go while the run waits inside step "last".
      await admin.script("FLUSH")
      expect(await killConnections(admin, connectionName)).toBeGreaterThanOrEqual(2)
      gates.second.open()

      // 3. Connections go again while that step's progress is being written and streamed.
      await waitUntil("the stream to show the last step's progress", () => contentOf(seen).includes("c1 "), {
        timeoutMs: WAIT_MS
      })
      expect(await killConnections(admin, connectionName)).toBeGreaterThanOrEqual(2)
      await streamed

      const stored = await client.readEvents(runId, { limit: 1000 })
      expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1))
      expect(seen).toEqual(stored.data)
      expect(seen.at(-1)?.type).toBe("run.worker.succeeded")
      const run = await client.getRun(runId)
      expect(run.status).toBe("succeeded")
      expect(run.output).toEqual({ done: true })
      expect(executions.draft).toBe(1)
      // Every delta exactly once: a write resent after a reconnect is not applied twice.
      const deltas = (letter: string, n: number) =>
        Array.from({ length: n }, (_, i) => `${letter}${i} `).join("")
      expect(contentOf(seen)).toBe(deltas("a", 5) + deltas("b", 10) + deltas("c", 30))
    })
  })
}
