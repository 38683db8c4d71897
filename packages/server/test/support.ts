/** Test support for the storage tests: servers on a given environment, closed and cleaned up after each test. */
import { randomBytes } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { BatonEngine } from "@baton/core"
import { afterEach, expect } from "vitest"
import { loadConfig, type ServerConfig } from "../src/Config.js"
import { type RunningServer, startServer } from "../src/Server.js"

export const configFor = (env: NodeJS.ProcessEnv): ServerConfig => ({
  ...loadConfig({ PORT: "0", HOST: "127.0.0.1", ...env }),
  shutdownGraceMs: 100
})

/**
 * Servers started through it are closed, and temp directories removed, after
 * each test of the file that calls it.
 */
export const serverHarness = () => {
  const servers: RunningServer[] = []
  const dirs: string[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()))
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
  })
  return {
    /** A fresh directory to hold a data dir (and its lock file beside it). */
    tempDir: async (): Promise<string> => {
      const dir = await mkdtemp(join(tmpdir(), "baton-server-storage-"))
      dirs.push(dir)
      return dir
    },
    start: async (env: NodeJS.ProcessEnv): Promise<{ server: RunningServer; lines: string[] }> => {
      const lines: string[] = []
      const server = await startServer({ config: configFor(env), log: (line) => lines.push(line) })
      servers.push(server)
      return { server, lines }
    },
    /** The rejection of a start that must fail (a server that started anyway is closed after the test). */
    startFailure: (env: NodeJS.ProcessEnv): Promise<unknown> =>
      startServer({ config: configFor(env), log: () => {} }).then(
        (server) => {
          servers.push(server)
          throw new Error("expected the start to fail")
        },
        (error: unknown) => error
      )
  }
}

export interface ApiResponse {
  readonly status: number
  readonly body: Record<string, unknown>
}

/** Calls the API as a client would, with the bearer key (and a fresh idempotency key on a POST). */
export const api = async (
  server: RunningServer,
  key: string,
  path: string,
  body?: unknown
): Promise<ApiResponse> => {
  const response = await fetch(`${server.url}/v1${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      ...(body === undefined ? {} : { "idempotency-key": randomBytes(8).toString("hex") })
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  // request_id names the response, not the stored data: left out so two reads compare equal.
  const { request_id: _requestId, ...rest } = (await response.json()) as Record<string, unknown>
  return { status: response.status, body: rest }
}

/** Follows a run's events until `type` is seen (the feed ends the loop; no timing involved). */
export const waitFor = async (engine: BatonEngine, runId: string, type: string): Promise<void> => {
  for await (const event of await engine.subscribe(runId)) if (event.type === type) return
  throw new Error(`the run ended without ${type}`)
}

/** The id of a run `POST /runs` created. */
export const runIdOf = (created: ApiResponse): string => {
  expect(created.status).toBe(201)
  const id = created.body.id
  if (typeof id !== "string") throw new Error("expected a run id")
  return id
}
