/**
 * The server's configuration, read from environment variables (SPEC §8).
 * Every problem is reported at once, naming the variable and the expected
 * form; a secret value (the bootstrap key) is never repeated back.
 */
import { inspect } from "node:util"
import { parseKey } from "@baton/core"

/** Storage names this build can start. */
export type StorageName = "memory"
/** Every name BATON_STORAGE recognises, started or not by this build. */
export const STORAGE_NAMES = ["memory", "pglite", "postgres", "redis", "mongo"] as const
/** Recognised names whose adapters are not part of this build yet. */
const NOT_YET_AVAILABLE: ReadonlySet<string> = new Set(["pglite", "postgres", "redis", "mongo"])

export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A secret held in memory: `reveal()` gives it; logging or serialising it shows `[REDACTED]`. */
export class Secret {
  readonly #value: string
  constructor(value: string) {
    this.#value = value
  }
  reveal(): string {
    return this.#value
  }
  toString(): string {
    return "[REDACTED]"
  }
  toJSON(): string {
    return "[REDACTED]"
  }
  [inspect.custom](): string {
    return "Secret([REDACTED])"
  }
}

export interface ServerConfig {
  /** `PORT`: 0–65535 (0 = any free port); default 3000. */
  readonly port: number
  /** `HOST`: the address to listen on; default `0.0.0.0`. */
  readonly host: string
  /** `BATON_STORAGE`: default `memory` in this build (PGlite becomes the default later). */
  readonly storage: StorageName
  /** `BATON_BOOTSTRAP_KEY`: `key_id:secret` ensured at start; null = create one when storage has none. */
  readonly bootstrapKey: Secret | null
  /** `BATON_WORKER_CONCURRENCY`: runs executed at once; 0 = no worker (API only). Default 10. */
  readonly workerConcurrency: number
  /** `BATON_CORS_ORIGINS`: browser origins allowed to call the API; default none (CORS off). */
  readonly corsOrigins: ReadonlyArray<string>
  /** `BATON_LOG_LEVEL`: default `info`. */
  readonly logLevel: LogLevel
  /** How long a shutdown lets in-flight runs go on before stopping them (not an env variable). */
  readonly shutdownGraceMs: number
}

export const DEFAULT_PORT = 3000
export const DEFAULT_HOST = "0.0.0.0"
export const DEFAULT_WORKER_CONCURRENCY = 10
/** The largest concurrency a worker can claim for (a claim's bound). */
export const MAX_WORKER_CONCURRENCY = 1000
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000

export interface ConfigProblem {
  readonly variable: string
  readonly message: string
}

/** A configuration value is wrong. The message names each variable and never contains a secret. */
export class ConfigError extends Error {
  override readonly name = "ConfigError"
  readonly problems: ReadonlyArray<ConfigProblem>
  constructor(problems: ReadonlyArray<ConfigProblem>) {
    super(problems.map((p) => p.message).join("; "))
    this.problems = problems
  }
  /** The first variable at fault. */
  get variable(): string {
    return this.problems[0]?.variable ?? ""
  }
}

/** A non-secret value for messages: shortened, and any URL credentials (`//user:pass@`) masked. */
const shown = (value: string): string => {
  const masked = value.replace(/\/\/[^/@\s]*@/g, "//***@")
  return JSON.stringify(masked.length > 60 ? `${masked.slice(0, 57)}...` : masked)
}

/** Unset or blank counts as unset (env files often carry `NAME=`). */
const read = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const value = env[name]
  return value === undefined || value.trim() === "" ? undefined : value.trim()
}

const parseInteger = (value: string): number | null => (/^\d{1,10}$/.test(value) ? Number(value) : null)

/** `scheme://host[:port]` with http or https, nothing after it. */
const isOrigin = (value: string): boolean => {
  if (!URL.canParse(value)) return false
  const url = new URL(value)
  return (url.protocol === "http:" || url.protocol === "https:") && url.origin === value.replace(/\/$/, "")
}

export const loadConfig = (env: NodeJS.ProcessEnv): ServerConfig => {
  const problems: ConfigProblem[] = []
  const problem = (variable: string, message: string) => problems.push({ variable, message })

  let port = DEFAULT_PORT
  const rawPort = read(env, "PORT")
  if (rawPort !== undefined) {
    const n = parseInteger(rawPort)
    if (n === null || n > 65535)
      problem("PORT", `PORT must be an integer from 0 to 65535 (got ${shown(rawPort)}).`)
    else port = n
  }

  let host = DEFAULT_HOST
  const rawHost = read(env, "HOST")
  if (rawHost !== undefined) {
    if (/[\s/]/.test(rawHost))
      problem("HOST", `HOST must be a host name or IP address such as 0.0.0.0 (got ${shown(rawHost)}).`)
    else host = rawHost
  }

  let storage: StorageName = "memory"
  const rawStorage = read(env, "BATON_STORAGE")
  if (rawStorage !== undefined) {
    const name = rawStorage.toLowerCase()
    if (name === "memory") storage = "memory"
    else if (NOT_YET_AVAILABLE.has(name))
      problem(
        "BATON_STORAGE",
        `BATON_STORAGE=${name} is not available yet in this build; use BATON_STORAGE=memory (the default today).`
      )
    else
      problem(
        "BATON_STORAGE",
        `BATON_STORAGE must be one of ${STORAGE_NAMES.join(", ")} (got ${shown(rawStorage)}); only memory is available in this build.`
      )
  }

  let bootstrapKey: Secret | null = null
  const rawKey = read(env, "BATON_BOOTSTRAP_KEY")
  if (rawKey !== undefined) {
    if (parseKey(rawKey) === null)
      // Never the value: it is (or is close to) a secret.
      problem(
        "BATON_BOOTSTRAP_KEY",
        "BATON_BOOTSTRAP_KEY must be key_id:secret, where key_id is key_ followed by 8 to 64 letters or " +
          "digits and secret is 16 to 128 characters from A-Z a-z 0-9 _ - (the value is not shown)."
      )
    else bootstrapKey = new Secret(rawKey)
  }

  let workerConcurrency = DEFAULT_WORKER_CONCURRENCY
  const rawConcurrency = read(env, "BATON_WORKER_CONCURRENCY")
  if (rawConcurrency !== undefined) {
    const n = parseInteger(rawConcurrency)
    if (n === null || n > MAX_WORKER_CONCURRENCY)
      problem(
        "BATON_WORKER_CONCURRENCY",
        `BATON_WORKER_CONCURRENCY must be an integer from 0 (no worker: API only) to ${MAX_WORKER_CONCURRENCY} (got ${shown(rawConcurrency)}).`
      )
    else workerConcurrency = n
  }

  let corsOrigins: ReadonlyArray<string> = []
  const rawOrigins = read(env, "BATON_CORS_ORIGINS")
  if (rawOrigins !== undefined) {
    const origins = rawOrigins
      .split(",")
      .map((o) => o.trim())
      .filter((o) => o !== "")
    const bad = origins.filter((o) => !isOrigin(o))
    if (bad.length > 0)
      problem(
        "BATON_CORS_ORIGINS",
        "BATON_CORS_ORIGINS must be a comma-separated list of origins such as " +
          `https://app.example.com,http://localhost:5173 (scheme://host[:port], no path; got ${bad.map(shown).join(", ")}).`
      )
    else corsOrigins = [...new Set(origins.map((o) => o.replace(/\/$/, "")))]
  }

  let logLevel: LogLevel = "info"
  const rawLevel = read(env, "BATON_LOG_LEVEL")
  if (rawLevel !== undefined) {
    const level = LOG_LEVELS.find((l) => l === rawLevel.toLowerCase())
    if (level === undefined)
      problem(
        "BATON_LOG_LEVEL",
        `BATON_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")} (got ${shown(rawLevel)}).`
      )
    else logLevel = level
  }

  if (problems.length > 0) throw new ConfigError(problems)
  return {
    port,
    host,
    storage,
    bootstrapKey,
    workerConcurrency,
    corsOrigins,
    logLevel,
    shutdownGraceMs: DEFAULT_SHUTDOWN_GRACE_MS
  }
}

/** The key id of a `key_id:secret` (public, safe to log); null when malformed. */
export const keyIdOf = (key: Secret): string | null => parseKey(key.reveal())?.keyId ?? null
