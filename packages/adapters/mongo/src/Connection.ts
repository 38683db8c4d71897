/**
 * Opening the connection: a client with a short server-selection timeout (a
 * bad URL fails the start in seconds, not at the first request), then a
 * `hello` that refuses a standalone server. Baton's writes are multi-document
 * transactions, which MongoDB only runs on a replica set or a sharded cluster.
 */
import { MongoClient, MongoServerSelectionError } from "mongodb"

export const DEFAULT_DATABASE = "baton"
export const DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000

/** A start failure whose message is written for operators (no URL, no host, no password). */
export class MongoStartError extends Error {
  override readonly name = "MongoStartError"
}

/** MongoDB refuses these in database names; the length limit is 63 bytes. */
const DATABASE_NAME = /^[^/\\. "$*<>:|?]{1,63}$/

export const checkDatabaseName = (name: string): string => {
  if (!DATABASE_NAME.test(name) || name.includes("\u0000") || Buffer.byteLength(name, "utf8") > 63)
    throw new TypeError(
      `database must be 1-63 bytes without / \\ . " $ * < > : | ? or spaces (got ${JSON.stringify(name)})`
    )
  return name
}

/**
 * The database named in a connection URL's path (`mongodb://host/<db>?…`), or
 * null when it names none. Never throws: a malformed URL is the driver's to report.
 */
export const databaseInUrl = (url: string): string | null => {
  const scheme = url.indexOf("://")
  if (scheme < 0) return null
  const rest = url.slice(scheme + 3).split("?")[0]!
  // Credentials may hold an encoded "/" but never a raw one; hosts hold neither.
  const afterCredentials = rest.slice(rest.lastIndexOf("@") + 1)
  const slash = afterCredentials.indexOf("/")
  if (slash < 0) return null
  const name = decodeURIComponent(afterCredentials.slice(slash + 1))
  return name === "" ? null : name
}

/** What `hello` says about the deployment. */
export interface Topology {
  readonly kind: "replicaSet" | "sharded" | "standalone"
  readonly writablePrimary: boolean
}

export const topologyOf = (hello: Record<string, unknown>): Topology => ({
  kind:
    typeof hello.setName === "string" ? "replicaSet" : hello.msg === "isdbgrid" ? "sharded" : "standalone",
  writablePrimary: hello.isWritablePrimary === true || hello.ismaster === true
})

export const STANDALONE_MESSAGE =
  "The MongoDB server is a standalone server: Baton needs a replica set (or a sharded cluster) for " +
  "transactions. Start mongod with --replSet <name> and run rs.initiate() once; a single-node replica set is enough."

/** Refuses a deployment Baton cannot run on; returns it otherwise. */
export const checkTopology = (hello: Record<string, unknown>): Topology => {
  const topology = topologyOf(hello)
  if (topology.kind === "standalone") throw new MongoStartError(STANDALONE_MESSAGE)
  if (!topology.writablePrimary)
    throw new MongoStartError(
      "The MongoDB server answered but is not a writable primary: connect with the replica set's name " +
        "(?replicaSet=<name>) or to its primary."
    )
  return topology
}

export const MALFORMED_URL_MESSAGE = "The MongoDB connection URL is malformed or names an unknown option."

export interface OpenOptions {
  readonly url: string
  readonly serverSelectionTimeoutMs: number
  readonly appName: string
}

/** Connects and checks the deployment; closes the client again when the check fails. */
export const openClient = async (options: OpenOptions): Promise<MongoClient> => {
  let client: MongoClient
  try {
    client = new MongoClient(options.url, {
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMs,
      appName: options.appName,
      // Over whatever the URL says: transactions need the primary, a read must see what was just
      // acknowledged, and an acknowledged write must survive a failover (an arbiter makes the
      // server's default w:1).
      readPreference: "primary",
      readConcern: { level: "majority" },
      writeConcern: { w: "majority" }
    })
  } catch {
    // The driver's parse errors quote the URL (and with it, perhaps, a password): say it in our words.
    throw new MongoStartError(MALFORMED_URL_MESSAGE)
  }
  try {
    await client.connect()
    await verifyDeployment(client)
    return client
  } catch (cause) {
    await client.close().catch(() => {})
    throw explainSelectionFailure(cause)
  }
}

/**
 * A URL naming a replica set that a standalone server (or a member never
 * initiated) answers ends in a server-selection timeout; the servers the
 * driver did reach say why, and the operator gets that instead of a timeout.
 */
const explainSelectionFailure = (cause: unknown): unknown => {
  if (!(cause instanceof MongoServerSelectionError)) return cause
  const types = [...(cause.reason?.servers.values() ?? [])].map((s) => s.type)
  if (types.includes("Standalone")) return new MongoStartError(STANDALONE_MESSAGE)
  if (types.includes("RSGhost"))
    return new MongoStartError(
      "The MongoDB server runs with --replSet but its replica set was never initiated: run rs.initiate() once."
    )
  return cause
}

/** Runs `hello` on the client's primary and refuses a standalone server. */
export const verifyDeployment = async (client: MongoClient): Promise<Topology> =>
  checkTopology(await client.db("admin").command({ hello: 1 }))
