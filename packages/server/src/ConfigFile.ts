/**
 * `baton.config.ts`: the optional file that brings your own handlers (and,
 * optionally, a storage adapter) to `pnpm start`.
 *
 * ```ts
 * import type { BatonFileConfig } from "@baton/server"
 * export default { handlers: { triage } } satisfies BatonFileConfig
 * ```
 */
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import type { AnyHandler, StorageAdapter } from "@baton/core"
import { ConfigError } from "./Config.js"

/** What `baton.config.ts` default-exports. */
export interface BatonFileConfig {
  /** Merged over the built-in `default` demo handler (a `default` here replaces it). */
  readonly handlers?: Readonly<Record<string, AnyHandler>>
  /** Used instead of the store named by BATON_STORAGE. */
  readonly storage?: StorageAdapter
}

export const CONFIG_FILE = "baton.config.ts"

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const invalid = (message: string): ConfigError => new ConfigError([{ variable: CONFIG_FILE, message }])

/**
 * Imports `baton.config.ts` from `dir` and checks its shape; null when there is
 * none. Importing TypeScript needs a loader such as tsx (`pnpm start` uses it).
 */
export const loadConfigFile = async (dir: string): Promise<BatonFileConfig | null> => {
  const path = resolve(dir, CONFIG_FILE)
  if (!existsSync(path)) return null
  const module: unknown = await import(pathToFileURL(path).href)
  const value = isRecord(module) ? module.default : undefined
  if (!isRecord(value)) throw invalid(`${path} must export default { handlers?, storage? }.`)
  const { handlers, storage } = value
  if (
    handlers !== undefined &&
    (!isRecord(handlers) || !Object.values(handlers).every((h) => typeof h === "function"))
  )
    throw invalid(`${path}: handlers must be an object of handler functions by name.`)
  if (
    storage !== undefined &&
    (!isRecord(storage) || typeof storage.name !== "string" || !isRecord(storage.layer))
  )
    throw invalid(`${path}: storage must be a StorageAdapter ({ name, layer }), e.g. memoryStorage().`)
  return {
    // Checked above: functions by name, and an object shaped like an adapter.
    ...(handlers === undefined ? {} : { handlers: handlers as Readonly<Record<string, AnyHandler>> }),
    ...(storage === undefined ? {} : { storage: storage as unknown as StorageAdapter })
  }
}
