/**
 * Where adapter tests find their database: the env URL first, then the
 * machine's local default, then a testcontainers container when a container
 * runtime answers. Otherwise the tests skip with a loud message — unless the
 * service is named in BATON_TEST_REQUIRE (CI sets `postgres,redis`), in which
 * case its absence fails the suite.
 */
import { connect } from "node:net"

export type ServiceName = "postgres" | "redis" | "mongo"

export interface ServiceLocation {
  readonly url: string
  readonly source: "env" | "local" | "container"
  /** Stops the container this finder started; a no-op otherwise. */
  readonly stop: () => Promise<void>
}

export const SERVICE_ENV: Readonly<Record<ServiceName, string>> = {
  postgres: "BATON_TEST_POSTGRES_URL",
  redis: "BATON_TEST_REDIS_URL",
  mongo: "BATON_TEST_MONGO_URL"
}

export const LOCAL_DEFAULTS: Readonly<Record<ServiceName, string>> = {
  postgres: "postgres://postgres@127.0.0.1:5432/test",
  redis: "redis://127.0.0.1:6379",
  mongo: "mongodb://127.0.0.1:27017/?replicaSet=rs0"
}

const DEFAULT_PORTS: Readonly<Record<ServiceName, number>> = { postgres: 5432, redis: 6379, mongo: 27017 }

/** The services whose absence must fail the tests (BATON_TEST_REQUIRE, comma-separated). */
export const requiredServices = (env: NodeJS.ProcessEnv = process.env): ReadonlySet<string> =>
  new Set(
    (env.BATON_TEST_REQUIRE ?? "")
      .split(",")
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s.length > 0)
  )

/** True when a TCP connection to the URL's host and port opens within `timeoutMs`. */
export const isReachable = (url: string, service: ServiceName, timeoutMs = 1500): Promise<boolean> => {
  let host: string
  let port: number
  try {
    const u = new URL(url)
    host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1"
    port = u.port === "" ? DEFAULT_PORTS[service] : Number(u.port)
  } catch {
    return Promise.resolve(false)
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })
}

/** Host part of a URL without credentials, for messages. */
const describeUrl = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}`
  } catch {
    return "(unparseable URL)"
  }
}

const startContainer = async (service: ServiceName): Promise<ServiceLocation | null> => {
  const tc = await import("testcontainers")
  try {
    await tc.getContainerRuntimeClient()
  } catch {
    return null
  }
  switch (service) {
    case "postgres": {
      const c = await new tc.GenericContainer("postgres:16-alpine")
        .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust", POSTGRES_DB: "test" })
        .withExposedPorts(5432)
        .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
        .start()
      return {
        url: `postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/test`,
        source: "container",
        stop: async () => {
          await c.stop()
        }
      }
    }
    case "redis": {
      const c = await new tc.GenericContainer("redis:7-alpine")
        .withCommand(["redis-server", "--appendonly", "yes"])
        .withExposedPorts(6379)
        .withWaitStrategy(tc.Wait.forLogMessage(/Ready to accept connections/))
        .start()
      return {
        url: `redis://${c.getHost()}:${c.getMappedPort(6379)}`,
        source: "container",
        stop: async () => {
          await c.stop()
        }
      }
    }
    case "mongo":
      return startMongoReplicaSet(tc)
  }
}

/**
 * MongoDB as a one-member replica set (transactions and change streams need
 * one): mongod starts with --replSet, the set is initiated inside the
 * container, and the URL connects directly to that member (its advertised
 * host is the container's own 127.0.0.1:27017, unreachable from here).
 */
const startMongoReplicaSet = async (tc: typeof import("testcontainers")): Promise<ServiceLocation> => {
  const c = await new tc.GenericContainer("mongo:7")
    .withCommand(["--replSet", "rs0", "--bind_ip_all"])
    .withExposedPorts(27017)
    .withWaitStrategy(tc.Wait.forLogMessage(/Waiting for connections/))
    .start()
  const stop = async () => {
    await c.stop()
  }
  try {
    const init = await c.exec([
      "mongosh",
      "--quiet",
      "--eval",
      "rs.initiate({ _id: 'rs0', members: [{ _id: 0, host: '127.0.0.1:27017' }] }).ok"
    ])
    if (init.exitCode !== 0) throw new Error(`rs.initiate failed: ${init.output.slice(-500)}`)
    // The member becomes primary a moment after the set is initiated.
    for (let attempt = 0; ; attempt++) {
      const hello = await c.exec(["mongosh", "--quiet", "--eval", "db.hello().isWritablePrimary"])
      if (hello.output.trim().endsWith("true")) break
      if (attempt >= 60) throw new Error("the MongoDB container's replica set elected no primary")
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  } catch (cause) {
    await stop()
    throw cause
  }
  return {
    url: `mongodb://${c.getHost()}:${c.getMappedPort(27017)}/?directConnection=true`,
    source: "container",
    stop
  }
}

export interface LocateOptions {
  readonly env?: NodeJS.ProcessEnv
  /** Overrides the machine's local default URL (tests of this finder). */
  readonly localDefault?: string
  /** Try testcontainers when nothing else answers (default true). */
  readonly containers?: boolean
  readonly log?: (message: string) => void
}

/**
 * Finds `service` or returns null after a loud message. Throws when the
 * service is required (BATON_TEST_REQUIRE) and cannot be found.
 */
export const locateService = async (
  service: ServiceName,
  options: LocateOptions = {}
): Promise<ServiceLocation | null> => {
  const env = options.env ?? process.env
  const log = options.log ?? ((m: string) => console.warn(m))
  const noop = async () => {}
  const envUrl = env[SERVICE_ENV[service]]
  const tried: string[] = []
  if (envUrl !== undefined && envUrl !== "") {
    if (await isReachable(envUrl, service)) return { url: envUrl, source: "env", stop: noop }
    tried.push(`${SERVICE_ENV[service]}=${describeUrl(envUrl)} (unreachable)`)
  }
  const local = options.localDefault ?? LOCAL_DEFAULTS[service]
  if (await isReachable(local, service)) return { url: local, source: "local", stop: noop }
  tried.push(`local default ${describeUrl(local)} (unreachable)`)
  if (options.containers !== false) {
    const container = await startContainer(service)
    if (container !== null) return container
    tried.push("testcontainers (no container runtime answers)")
  }
  const message = `${service} not found: tried ${tried.join("; ")}.`
  if (requiredServices(env).has(service))
    throw new Error(`BATON_TEST_REQUIRE names ${service}, so its tests must run. ${message}`)
  log(
    `\n${"!".repeat(78)}\n!! SKIPPING ${service.toUpperCase()} TESTS: ${message}\n!! Set ${SERVICE_ENV[service]} to run them.\n${"!".repeat(78)}\n`
  )
  return null
}
