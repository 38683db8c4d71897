/**
 * A cluster of real Baton server processes (`packages/server/src/main.ts`,
 * run by node with the tsx loader) on loopback ports, sharing one store.
 *
 * - Each process listens on a port of its own choosing (`PORT=0`); the port
 *   is read from its "Baton listening on http://…:PORT" line, then `/readyz`
 *   is awaited.
 * - All share one bootstrap key, and one directory holding the
 *   `baton.config.ts` that gives them the test handlers (support/Handlers.ts)
 *   and the effects file those handlers append to.
 * - Every process ever spawned is remembered by pid; `close()` stops the
 *   live ones (SIGTERM, SIGKILL after a timeout) and `leftovers()` lists any
 *   pid still alive, which the suites assert to be none. A process exit hook
 *   SIGKILLs whatever a crashed test run would leave behind.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { EffectLine } from "./Handlers.js"
import type { LaneStore } from "./Lanes.js"
import { waitFor, within } from "./Wait.js"

const here = (relative: string): string => fileURLToPath(new URL(relative, import.meta.url))
const REPO_ROOT = here("../../../")
const SERVER_MAIN = here("../../../packages/server/src/main.ts")
const HANDLERS_MODULE = here("./Handlers.ts")
/** tsx's ESM loader, resolved from the repository root (where tsx is a dev dependency). */
const TSX_LOADER = pathToFileURL(createRequire(join(REPO_ROOT, "package.json")).resolve("tsx")).href

/**
 * The worker lease of the server processes (`BATON_WORKER_LEASE_MS`; the server's default is 30 s).
 * Short, so a SIGKILLed worker's runs are taken over within seconds (heartbeats every third of it),
 * and long enough that a busy two-core machine never lets a live worker's lease lapse.
 */
export const SERVER_LEASE_MS = 5_000

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const B64URL = `${ALNUM}-_`
const randomOf = (alphabet: string, n: number): string =>
  Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join("")

/** A fresh `key_<24 base62>:<43 base64url>` (ApiKey.ts). */
export const newBootstrapKey = (): string => `key_${randomOf(ALNUM, 24)}:${randomOf(B64URL, 43)}`

export interface ServerOptions {
  /** `BATON_WORKER_CONCURRENCY`: 0 = API only. */
  readonly workers: number
  /** `BATON_WORKER_LEASE_MS`; default SERVER_LEASE_MS. */
  readonly leaseMs?: number
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface ServerProcess {
  /** A name for messages: A, B, C, … */
  readonly name: string
  readonly pid: number
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly workers: number
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>
  readonly alive: () => boolean
  /** Everything the process wrote, for failure messages. */
  readonly output: () => string
}

/** Every pid any cluster spawned in this test process and may not have reaped yet. */
const spawned = new Map<number, ChildProcess>()
process.once("exit", () => {
  for (const child of spawned.values()) if (child.exitCode === null) child.kill("SIGKILL")
})

const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export class Cluster {
  readonly dir: string
  readonly effectsFile: string
  readonly key: string
  readonly store: LaneStore
  private readonly processes: ServerProcess[] = []
  private readonly pids: number[] = []
  private readonly children = new Map<number, ChildProcess>()
  private count = 0

  constructor(store: LaneStore) {
    this.store = store
    this.key = newBootstrapKey()
    this.dir = mkdtempSync(join(tmpdir(), "baton-cluster-"))
    this.effectsFile = join(this.dir, "effects.log")
    writeFileSync(this.effectsFile, "")
    writeFileSync(
      join(this.dir, "baton.config.ts"),
      `export { default } from ${JSON.stringify(pathToFileURL(HANDLERS_MODULE).href)}\n`
    )
  }

  /** Starts one more server process and resolves once it is ready. */
  async start(options: ServerOptions): Promise<ServerProcess> {
    const name = String.fromCharCode(65 + this.count++)
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TMPDIR: process.env.TMPDIR,
      INIT_CWD: this.dir,
      PORT: "0",
      HOST: "127.0.0.1",
      BATON_LOG_LEVEL: "info",
      BATON_BOOTSTRAP_KEY: this.key,
      BATON_WORKER_CONCURRENCY: String(options.workers),
      BATON_WORKER_LEASE_MS: String(options.leaseMs ?? SERVER_LEASE_MS),
      BATON_CLUSTER_EFFECTS: this.effectsFile,
      ...this.store.serverEnv
    }
    const child = spawn(
      process.execPath,
      ["--import", TSX_LOADER, "--conditions=@baton/source", SERVER_MAIN],
      {
        cwd: this.dir,
        env,
        stdio: ["ignore", "pipe", "pipe"]
      }
    )
    const pid = child.pid
    if (pid === undefined) throw new Error(`server ${name} did not spawn`)
    spawned.set(pid, child)
    this.pids.push(pid)
    this.children.set(pid, child)
    let output = ""
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    const exited = new Promise<Exit>((resolve) =>
      child.once("exit", (code, signal) => {
        spawned.delete(pid)
        resolve({ code, signal })
      })
    )
    let hasExited = false
    void exited.then(() => {
      hasExited = true
    })

    // -1: the process exited, which ends the wait at once (a failed start is not waited out).
    const port = await waitFor(
      `server ${name} to say where it listens`,
      () => {
        if (hasExited) return -1
        const match = /Baton listening on http:\/\/[^\s]*:(\d+)/.exec(output)
        return match === null ? undefined : Number(match[1])
      },
      { timeoutMs: 60_000 }
    ).catch((error: unknown) => {
      child.kill("SIGKILL")
      throw new Error(`${String(error)}\nIts output so far:\n${output}`)
    })
    if (port === -1) throw new Error(`server ${name} exited while starting:\n${output}`)
    const url = `http://127.0.0.1:${port}`
    await waitFor(
      `server ${name} to be ready`,
      async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5_000) })).status === 200,
      {
        timeoutMs: 30_000
      }
    )
    const server: ServerProcess = {
      name,
      pid,
      url,
      workers: options.workers,
      exited,
      alive: () => !hasExited,
      output: () => output
    }
    this.processes.push(server)
    return server
  }

  /** Processes not known to have exited. */
  live(): ReadonlyArray<ServerProcess> {
    return this.processes.filter((p) => p.alive())
  }

  all(): ReadonlyArray<ServerProcess> {
    return this.processes
  }

  /** Sends `signal`; does not wait. */
  signal(server: ServerProcess, signal: NodeJS.Signals): void {
    this.children.get(server.pid)?.kill(signal)
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(server: ServerProcess): Promise<Exit> {
    this.signal(server, "SIGKILL")
    return within(`SIGKILL of server ${server.name}`, 10_000, server.exited)
  }

  /** SIGTERM (a graceful shutdown), SIGKILL when it has not exited after `timeoutMs`. */
  async stop(server: ServerProcess, timeoutMs = 15_000): Promise<Exit> {
    this.signal(server, "SIGTERM")
    const exit = await Promise.race([server.exited, sleep(timeoutMs).then(() => null)])
    if (exit !== null) return exit
    return this.kill(server)
  }

  /** The effects file's lines (support/Handlers.ts), in the order they were written. */
  effects(): ReadonlyArray<EffectLine> {
    return readFileSync(this.effectsFile, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as EffectLine)
  }

  /** Opens a held step's gate (support/Handlers.ts). */
  openGate(gate: string): void {
    writeFileSync(join(this.dir, `gate-${gate}`), "")
  }

  /** Stops every live process (SIGTERM, then SIGKILL) and removes the directory. */
  async close(): Promise<void> {
    await Promise.all(this.live().map((p) => this.stop(p, 5_000)))
    // Reap the children whose start failed before they were listed as processes.
    for (const [pid, child] of this.children)
      if (child.exitCode === null && child.signalCode === null && isRunning(pid)) child.kill("SIGKILL")
    await waitFor("every server process to be gone", () => this.leftovers().length === 0, {
      timeoutMs: 10_000
    })
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** Pids of processes this cluster spawned that still exist (`kill(pid, 0)` does not throw). */
  leftovers(): ReadonlyArray<number> {
    return this.pids.filter(isRunning)
  }
}
