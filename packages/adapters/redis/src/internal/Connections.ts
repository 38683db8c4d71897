/**
 * Opening, probing and closing the adapter's connections. Every connection is
 * named (CLIENT SETNAME) so an operator can find, or kill, Baton's clients.
 */
import { type StorageError, storageUnavailable } from "@baton/core"
import { Effect, type Scope } from "effect"
import { Cluster, Redis, type RedisOptions } from "ioredis"
import { toStorageError } from "./Errors.js"
import type { RedisClient } from "./Scripts.js"

export interface ConnectionSettings {
  /** Standalone server URL; ignored when `cluster` or `client` is given. */
  readonly url: string
  /** Seed nodes of a Redis Cluster. */
  readonly cluster: ReadonlyArray<{ readonly host: string; readonly port: number }> | null
  /** A connection the caller owns: used, never closed, by the adapter. */
  readonly client: RedisClient | null
  readonly connectionName: string
  readonly connectTimeoutMs: number
  readonly commandTimeoutMs: number
}

/** ioredis 6 types `replyMapping` strictly; the adapter always uses the default (RESP2 replies). */
type ClientOptions = Omit<RedisOptions, "replyMapping">

const commonOptions = (s: ConnectionSettings, name: string): ClientOptions => ({
  lazyConnect: true,
  connectionName: name,
  connectTimeout: s.connectTimeoutMs,
  commandTimeout: s.commandTimeoutMs,
  // Commands in flight when a connection drops are sent again after the reconnect
  // (ioredis's default; with it off they would hang until commandTimeout), even
  // after commandTimeout rejected their promise. Every script is safe to receive
  // twice, also after other writes landed in between: see the write ids in
  // append.lua, the run id checks of create_run and the idempotency scripts.
  autoResendUnfulfilledCommands: true,
  maxRetriesPerRequest: 2
})

/**
 * ioredis reports a dropped connection as an "error" event (and prints it when
 * nobody listens) while it reconnects; callers learn of it from the commands
 * that fail, as StorageErrors, so the event itself needs no handling.
 */
const quiet = <C extends RedisClient>(client: C): C => {
  client.on("error", () => {})
  return client
}

const closeQuietly = (client: RedisClient): Promise<void> =>
  client.quit().then(
    () => undefined,
    () => {
      client.disconnect()
    }
  )

/** Connects and answers one PING within the timeout, or fails with a clear StorageError. */
const connectAndProbe = (
  client: RedisClient,
  timeoutMs: number,
  what: string,
  owned: boolean
): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      if (client.status === "wait") await client.connect()
      await client.ping()
    },
    catch: toStorageError
  }).pipe(
    Effect.timeoutFail({
      duration: `${timeoutMs} millis`,
      onTimeout: () => storageUnavailable(`Could not reach Redis (${what}) within ${timeoutMs} ms.`)
    }),
    Effect.mapError((e) =>
      e.message.startsWith("Could not reach")
        ? e
        : storageUnavailable(`Could not connect to Redis (${what}): ${e.message}`)
    ),
    // A caller's own client is never closed, not even when its probe fails.
    Effect.tapError(() => (owned ? Effect.sync(() => client.disconnect()) : Effect.void))
  )

const scopedClient = (
  make: () => RedisClient,
  s: ConnectionSettings,
  what: string
): Effect.Effect<RedisClient, StorageError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.flatMap(
      Effect.sync(() => quiet(make())),
      (client) => Effect.as(connectAndProbe(client, s.connectTimeoutMs, what, true), client)
    ),
    (client) => Effect.promise(() => closeQuietly(client))
  )

/** The command connection (standalone or cluster), closed with the scope unless the caller owns it. */
export const openCommandClient = (
  s: ConnectionSettings
): Effect.Effect<RedisClient, StorageError, Scope.Scope> => {
  if (s.client !== null) {
    const client = s.client
    return Effect.as(connectAndProbe(client, s.connectTimeoutMs, "the given client", false), client)
  }
  if (s.cluster !== null) {
    const nodes = s.cluster.map((n) => ({ host: n.host, port: n.port }))
    return scopedClient(
      () =>
        new Cluster(nodes, {
          lazyConnect: true,
          enableAutoPipelining: true,
          redisOptions: commonOptions(s, s.connectionName)
        }),
      s,
      "cluster"
    )
  }
  return scopedClient(
    () => new Redis(s.url, { ...commonOptions(s, s.connectionName), enableAutoPipelining: true }),
    s,
    "server"
  )
}

/**
 * The dedicated pub/sub connection. On a cluster a plain PUBLISH reaches every
 * node, so one connection to any node hears every run's hints. It never
 * resubscribes on its own: the feed does it, then asks every stream to re-read.
 */
export const openSubscriberClient = (
  s: ConnectionSettings,
  command: RedisClient
): Effect.Effect<Redis, StorageError, Scope.Scope> => {
  const options: ClientOptions = {
    ...commonOptions(s, `${s.connectionName}:feed`),
    autoResubscribe: false,
    // A SUBSCRIBE sent while disconnected waits for the reconnect, bounded by commandTimeout.
    maxRetriesPerRequest: null
  }
  const make = (): Redis => {
    if (command instanceof Cluster) {
      const node = command.nodes("master")[0]
      const seed = s.cluster?.[0]
      const host = node?.options.host ?? seed?.host ?? "127.0.0.1"
      const port = node?.options.port ?? seed?.port ?? 6379
      const auth = node?.options
      return new Redis({
        ...options,
        host,
        port,
        ...(auth?.username === undefined ? {} : { username: auth.username }),
        ...(auth?.password === undefined ? {} : { password: auth.password }),
        ...(auth?.tls === undefined ? {} : { tls: auth.tls })
      })
    }
    return (command as Redis).duplicate(options)
  }
  return scopedClient(make, s, "feed") as Effect.Effect<Redis, StorageError, Scope.Scope>
}

/** Every master of a cluster, or the one server. */
export const masters = (client: RedisClient): ReadonlyArray<Redis> =>
  client instanceof Cluster ? client.nodes("master") : [client]
