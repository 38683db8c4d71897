/**
 * One real Baton server process per storage lane for the security suite,
 * started by the cluster harness (tests/cluster/support): a private schema or
 * key prefix with its own database identity, captured output, and a check
 * that no process is left behind.
 *
 * Two things differ from the cluster suite, both without changing its harness:
 * - the handlers: the cluster directory's `baton.config.ts` is rewritten
 *   (before any process starts) to load support/Handlers.ts of this suite;
 * - the environment: extra variables ride on the lane's `serverEnv`, which the
 *   harness passes to every process it starts.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Cluster, type ServerProcess } from "../../cluster/support/Cluster.js"
import type { LaneStore } from "../../cluster/support/Lanes.js"

const here = (relative: string): string => fileURLToPath(new URL(relative, import.meta.url))
const HANDLERS_MODULE = here("./Handlers.ts")

/** The server's names for the limits this suite sets (docs/configuration.md). */
export const LIMIT_SETTINGS = {
  rateLimitPerSecond: "BATON_RATE_LIMIT_PER_SECOND",
  rateLimitBurst: "BATON_RATE_LIMIT_BURST",
  sseMaxPerKey: "BATON_SSE_MAX_PER_KEY",
  keyCacheMs: "BATON_KEY_CACHE_MS"
} as const

/** The suite's lanes run with rate limiting off: the fuzz measures input handling, not throttling. */
export const SECURITY_ENV: Readonly<Record<string, string>> = {
  [LIMIT_SETTINGS.rateLimitPerSecond]: "0"
}

export interface SecurityServer {
  readonly cluster: Cluster
  readonly server: ServerProcess
  /** The operator's bootstrap key (customer `default`, every scope). */
  readonly operatorKey: string
}

/** Starts one server on `store` with this suite's handlers and `env` over SECURITY_ENV. */
export const startSecurityServer = async (
  store: LaneStore,
  options: { workers?: number; env?: Readonly<Record<string, string>> } = {}
): Promise<SecurityServer> => {
  const withEnv: LaneStore = { ...store, serverEnv: { ...store.serverEnv, ...SECURITY_ENV, ...options.env } }
  const cluster = new Cluster(withEnv)
  writeFileSync(
    join(cluster.dir, "baton.config.ts"),
    `export { default } from ${JSON.stringify(pathToFileURL(HANDLERS_MODULE).href)}\n`
  )
  try {
    const server = await cluster.start({ workers: options.workers ?? 2 })
    return { cluster, server, operatorKey: cluster.key }
  } catch (error) {
    await cluster.close()
    throw error
  }
}
