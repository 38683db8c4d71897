/**
 * `pnpm start`: the server from environment variables, plus `baton.config.ts`
 * when the directory `pnpm start` was run in has one. SIGTERM or SIGINT shuts
 * down gracefully and exits 0; a second signal exits at once.
 *
 * `pnpm start migrate` (`main.ts migrate`, i.e. `baton migrate`): applies the
 * configured store's pending schema migrations and exits, 0 when it is current.
 */
import "reflect-metadata"
import { ConfigError, loadConfig, maskCredentials, type ServerConfig } from "./Config.js"
import { type BatonFileConfig, CONFIG_FILE, loadConfigFile } from "./ConfigFile.js"
import { type RunningServer, startServer } from "./Server.js"
import { migrateStorage, StorageStartError } from "./ServerStorage.js"

const fail = (message: string): never => {
  process.stderr.write(`baton: ${message}\n`)
  process.exit(1)
}

/**
 * An error as one log line: its message and its causes', URL credentials masked, never a stack
 * (which may quote code, SQL or values). Bearer tokens never reach an error message.
 */
const messageOf = (error: unknown): string => {
  const parts: string[] = []
  let current: unknown = error
  for (let i = 0; i < 5 && current !== undefined && current !== null; i++) {
    parts.push(current instanceof Error ? current.message : String(current))
    current = current instanceof Error ? current.cause : undefined
  }
  return maskCredentials(parts.join(" (cause: ") + ")".repeat(parts.length - 1))
}

const hostForUrl = (host: string): string =>
  host.includes(":") && !host.startsWith("[") ? `[${host}]` : host

// pnpm runs the script in packages/server; INIT_CWD is where `pnpm start` was typed, and so where
// baton.config.ts and a relative BATON_DATA_DIR are looked for.
const workingDir = process.env.INIT_CWD ?? process.cwd()

const readConfig = (): ServerConfig => {
  try {
    return loadConfig(process.env, workingDir)
  } catch (error) {
    return fail(messageOf(error))
  }
}

const serve = async (): Promise<void> => {
  const config = readConfig()
  const out = (line: string) => {
    if (config.logLevel !== "silent") process.stdout.write(`${line}\n`)
  }

  let file: BatonFileConfig | null
  try {
    file = await loadConfigFile(workingDir)
  } catch (error) {
    return fail(
      error instanceof ConfigError ? error.message : `${CONFIG_FILE} failed to load: ${messageOf(error)}`
    )
  }
  if (file !== null)
    out(
      `Loaded ${CONFIG_FILE}${file.handlers ? ` (handlers: ${Object.keys(file.handlers).join(", ")})` : ""}.`
    )

  let server: RunningServer
  try {
    server = await startServer({
      config,
      ...(file?.handlers === undefined ? {} : { handlers: file.handlers }),
      ...(file?.storage === undefined ? {} : { storage: file.storage }),
      log: out
    })
  } catch (error) {
    // Both carry a complete one-line message written for the operator.
    if (error instanceof ConfigError || error instanceof StorageStartError) return fail(error.message)
    return fail(`failed to start: ${messageOf(error)}`)
  }
  out(`Baton listening on http://${hostForUrl(config.host)}:${server.port}`)

  let stopping = false
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) fail(`${signal} again: exiting without waiting for the shutdown.`)
    stopping = true
    out(`${signal} received: shutting down.`)
    server.close().then(
      () => process.exit(0),
      (error: unknown) => fail(`shutdown failed: ${messageOf(error)}`)
    )
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}

const migrateCommand = async (): Promise<void> => {
  const config = readConfig()
  try {
    const report = await migrateStorage(config)
    if (config.storage === "memory" || config.storage === "redis" || config.storage === "mongo")
      process.stdout.write(`Nothing to migrate: ${report.target} keeps no schema.\n`)
    else if (report.applied.length === 0)
      process.stdout.write(`${report.target} is up to date (schema version ${report.to}).\n`)
    else {
      process.stdout.write(
        `Migrated ${report.target} from schema version ${report.from} to ${report.to}, applying:\n`
      )
      for (const m of report.applied) process.stdout.write(`  ${m.version} ${m.name}\n`)
    }
  } catch (error) {
    if (error instanceof StorageStartError) return fail(error.message)
    return fail(`migrate failed: ${messageOf(error)}`)
  }
  process.exit(0)
}

const USAGE = "usage: main.ts [migrate] (no argument: start the server)"

const command = process.argv[2]
if (command === undefined) await serve()
else if (command === "migrate") await migrateCommand()
else fail(`unknown command ${JSON.stringify(command)}; ${USAGE}`)
