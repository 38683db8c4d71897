/**
 * `mongoStorage`: Baton on a MongoDB replica set (or sharded cluster). Its
 * Layer connects (failing fast on a bad URL), refuses a standalone server,
 * creates the indexes, picks the event feed (change streams when the server
 * has them), and closes all of it with the engine.
 */
import {
  EventFeed,
  KeyStore,
  RunStore,
  type StorageAdapter,
  type StorageError,
  storageUnavailable
} from "@baton/core"
import { Context, Effect, Layer } from "effect"
import { type MongoClient, MongoError } from "mongodb"
import { type Collections, collectionsOf, ensureIndexes } from "./Collections.js"
import {
  checkDatabaseName,
  DEFAULT_DATABASE,
  DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
  databaseInUrl,
  MongoStartError,
  openClient,
  verifyDeployment
} from "./Connection.js"
import { makeHintFeed } from "./HintFeed.js"
import { detectChangeStreams, eventSources, type FeedMode } from "./MongoEventFeed.js"
import { makeKeyStore } from "./MongoKeyStore.js"
import { makeRunStore } from "./MongoRunStore.js"
import { toStorageError } from "./StorageErrors.js"
import { concurrentWrites, serialWrites } from "./WriteGate.js"

export const DEFAULT_POLL_INTERVAL_MS = 250
/** Bounds of `pollIntervalMs`: faster is a busy loop on the server, slower makes streams lag. */
export const POLL_INTERVAL_BOUNDS = { min: 10, max: 60_000 } as const

interface CommonOptions {
  /**
   * The database holding Baton's collections: this option, else the one named
   * in the URL's path, else `baton`.
   */
  readonly database?: string
  /**
   * `auto` (default): change streams when the server has them, else polling.
   * `changeStream`: refuse to start without them. `poll`: never open one.
   */
  readonly feed?: FeedMode
  /** How often subscribed runs are polled while no change stream is open (default 250 ms, 10 ms–60 s). */
  readonly pollIntervalMs?: number
  /**
   * Runs this process's writes one at a time (default false). Only for a
   * server that loses concurrent transactions, such as the jongodb emulator
   * Baton's CI uses; a MongoDB replica set never needs it.
   */
  readonly serializeWrites?: boolean
}

export interface MongoUrlOptions extends CommonOptions {
  /** `mongodb://…?replicaSet=…` or `mongodb+srv://…`; never logged or put in an error. */
  readonly url: string
  /** How long the start waits for a server to answer before failing (default 5000). */
  readonly serverSelectionTimeoutMs?: number
  /** Shown to the server as the client's name (default `baton`). */
  readonly appName?: string
}

export interface MongoClientOptions extends CommonOptions {
  /** A client you opened and close yourself: the engine uses it and never closes it. */
  readonly client: MongoClient
}

export type MongoStorageOptions = MongoUrlOptions | MongoClientOptions

const pollIntervalOf = (options: CommonOptions): number => {
  const ms = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS
  if (!(Number.isInteger(ms) && ms >= POLL_INTERVAL_BOUNDS.min && ms <= POLL_INTERVAL_BOUNDS.max))
    throw new TypeError(
      `pollIntervalMs must be an integer from ${POLL_INTERVAL_BOUNDS.min} to ${POLL_INTERVAL_BOUNDS.max} (got ${ms})`
    )
  return ms
}

const databaseOf = (options: MongoStorageOptions): string =>
  checkDatabaseName(
    options.database ?? ("url" in options ? databaseInUrl(options.url) : null) ?? DEFAULT_DATABASE
  )

/** Codes of an index that exists under Baton's name with other keys or options. */
const INDEX_CONFLICT_CODES: ReadonlySet<unknown> = new Set([85, 86])

/** Start failures whose message is written for operators pass through; driver errors are mapped. */
const startError = (cause: unknown): StorageError => {
  if (cause instanceof MongoStartError) return storageUnavailable(cause.message)
  if (cause instanceof MongoError && INDEX_CONFLICT_CODES.has(cause.code))
    return storageUnavailable(
      "An index with the name of one of Baton's exists with other keys or options in this database: " +
        "drop it, or give Baton a database of its own."
    )
  return toStorageError(cause)
}

const chooseFeed = async (mode: FeedMode, c: Collections): Promise<boolean> => {
  if (mode === "poll") return false
  const available = await detectChangeStreams(c)
  if (!available && mode === "changeStream")
    throw new MongoStartError(
      'The MongoDB server does not run change streams: use feed "poll" (or "auto") with this server.'
    )
  return available
}

interface LayerSettings {
  readonly database: string
  readonly serializeWrites: boolean
  readonly feed: FeedMode
  readonly pollIntervalMs: number
}

/** `owned`: the layer opened the client, so it closes it too. */
const storageLayer = (open: () => Promise<MongoClient>, owned: boolean, settings: LayerSettings) =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const client = yield* Effect.acquireRelease(
        Effect.tryPromise({ try: open, catch: startError }),
        (client) => (owned ? Effect.promise(() => client.close().catch(() => {})) : Effect.void)
      )
      const collections = collectionsOf(client.db(settings.database))
      const changeStreams = yield* Effect.tryPromise({
        try: async () => {
          await ensureIndexes(collections)
          return chooseFeed(settings.feed, collections)
        },
        catch: startError
      })
      const feed = makeHintFeed(eventSources(collections, changeStreams), {
        pollIntervalMs: settings.pollIntervalMs
      })
      yield* Effect.acquireRelease(Effect.tryPromise({ try: feed.start, catch: startError }), () =>
        Effect.promise(() => feed.stop().catch(() => {}))
      )
      const gate = settings.serializeWrites ? serialWrites() : concurrentWrites
      return Context.make(RunStore, RunStore.makeEncoded(makeRunStore(client, collections, gate))).pipe(
        Context.add(EventFeed, feed.feed),
        Context.add(KeyStore, KeyStore.makeEncoded(makeKeyStore(collections, gate)))
      )
    })
  )

/** Baton on MongoDB: a replica set (a single node is enough) or a sharded cluster. */
export const mongoStorage = (options: MongoStorageOptions): StorageAdapter => {
  const settings: LayerSettings = {
    database: databaseOf(options),
    serializeWrites: options.serializeWrites ?? false,
    feed: options.feed ?? "auto",
    pollIntervalMs: pollIntervalOf(options)
  }
  if ("client" in options) {
    const { client } = options
    return {
      name: "mongo",
      layer: storageLayer(
        async () => {
          await client.connect()
          await verifyDeployment(client)
          return client
        },
        false,
        settings
      )
    }
  }
  const { url } = options
  return {
    name: "mongo",
    layer: storageLayer(
      () =>
        openClient({
          url,
          serverSelectionTimeoutMs: options.serverSelectionTimeoutMs ?? DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
          appName: options.appName ?? "baton"
        }),
      true,
      settings
    )
  }
}
