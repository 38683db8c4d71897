import { createServer, type Server } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { isReachable, locateService, requiredServices } from "../src/Services.js"

// A listening socket stands in for a service; a closed port for a missing one.
let server: Server
let openUrl: string
let closedUrl: string

beforeAll(async () => {
  server = createServer((socket) => socket.end())
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no port")
  openUrl = `redis://127.0.0.1:${address.port}`
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve))
  const closed = probe.address()
  if (closed === null || typeof closed === "string") throw new Error("no port")
  closedUrl = `redis://127.0.0.1:${closed.port}`
  await new Promise<void>((resolve) => probe.close(() => resolve()))
})
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

describe("locateService", () => {
  it("parses BATON_TEST_REQUIRE as a comma list", () => {
    expect([...requiredServices({ BATON_TEST_REQUIRE: " postgres, Redis ,," })]).toEqual([
      "postgres",
      "redis"
    ])
    expect(requiredServices({}).size).toBe(0)
  })

  it("tells reachable from unreachable addresses", async () => {
    expect(await isReachable(openUrl, "redis")).toBe(true)
    expect(await isReachable(closedUrl, "redis")).toBe(false)
    expect(await isReachable("not a url", "redis")).toBe(false)
  })

  it("prefers the env URL, then the local default", async () => {
    const fromEnv = await locateService("redis", {
      env: { BATON_TEST_REDIS_URL: openUrl },
      localDefault: closedUrl,
      containers: false
    })
    expect(fromEnv).toMatchObject({ url: openUrl, source: "env" })
    const fromLocal = await locateService("redis", {
      env: { BATON_TEST_REDIS_URL: closedUrl },
      localDefault: openUrl,
      containers: false
    })
    expect(fromLocal).toMatchObject({ url: openUrl, source: "local" })
  })

  it("skips loudly when nothing answers and the service is not required", async () => {
    const messages: string[] = []
    const found = await locateService("redis", {
      env: {},
      localDefault: closedUrl,
      containers: false,
      log: (m) => messages.push(m)
    })
    expect(found).toBeNull()
    expect(messages.join("\n")).toContain("SKIPPING REDIS TESTS")
  })

  it("fails when a required service cannot be found", async () => {
    await expect(
      locateService("redis", {
        env: { BATON_TEST_REQUIRE: "postgres,redis", BATON_TEST_REDIS_URL: "redis://user:pw@127.0.0.1:1" },
        localDefault: closedUrl,
        containers: false
      })
    ).rejects.toThrow(/BATON_TEST_REQUIRE names redis/)
  })

  it("never prints credentials from a URL", async () => {
    const messages: string[] = []
    await locateService("postgres", {
      env: { BATON_TEST_POSTGRES_URL: "postgres://admin:s3cret@127.0.0.1:1/db" },
      localDefault: closedUrl,
      containers: false,
      log: (m) => messages.push(m)
    })
    expect(messages.join("\n")).not.toContain("s3cret")
  })
})
