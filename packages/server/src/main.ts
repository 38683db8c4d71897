/**
 * `pnpm start`: the server from environment variables, plus `baton.config.ts`
 * when the directory `pnpm start` was run in has one. SIGTERM or SIGINT shuts
 * down gracefully and exits 0; a second signal exits at once.
 */
import "reflect-metadata"
import { ConfigError, loadConfig, type ServerConfig } from "./Config.js"
import { type BatonFileConfig, CONFIG_FILE, loadConfigFile } from "./ConfigFile.js"
import { type RunningServer, startServer } from "./Server.js"

const fail = (message: string): never => {
  process.stderr.write(`baton: ${message}\n`)
  process.exit(1)
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const hostForUrl = (host: string): string =>
  host.includes(":") && !host.startsWith("[") ? `[${host}]` : host

const main = async (): Promise<void> => {
  let config: ServerConfig
  try {
    config = loadConfig(process.env)
  } catch (error) {
    return fail(messageOf(error))
  }
  const out = (line: string) => {
    if (config.logLevel !== "silent") process.stdout.write(`${line}\n`)
  }

  let file: BatonFileConfig | null
  try {
    // pnpm runs the script in packages/server; INIT_CWD is where `pnpm start` was typed.
    file = await loadConfigFile(process.env.INIT_CWD ?? process.cwd())
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
    if (error instanceof ConfigError) return fail(error.message)
    if (config.logLevel === "debug") console.error(error)
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

await main()
