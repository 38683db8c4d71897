/**
 * The jongodb emulator (a MongoDB wire-protocol server in one native binary)
 * as a child process of the test file that needs it: started on a free port,
 * its URL read from its first line of output, and killed when the file ends
 * (also when the test process exits without running its hooks).
 *
 * It implements transactions but without write-conflict detection, has no
 * change streams and ignores projections: good for sequential tests only.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

export interface Emulator {
  /**
   * `mongodb://127.0.0.1:<port>/test?replicaSet=rs0&serverMonitoringMode=poll`. The emulator
   * breaks the driver's streaming heartbeat ("Server ended moreToCome unexpectedly"): every
   * break clears the connection pool and stalls the next operations ~500 ms. Polled
   * heartbeats avoid it.
   */
  readonly url: string
  readonly stop: () => Promise<void>
}

export type EmulatorProfile = "replicaset" | "standalone"

const START_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 5_000

/** The binary's path, or null when the package for this platform is not installed. */
export const emulatorBinary = (): string | null => {
  try {
    const require = createRequire(import.meta.url)
    const pkg = require.resolve("@jongodb/memory-server-bin-linux-x64-gnu/package.json")
    const bin = join(dirname(pkg), "bin", "jongodb")
    return existsSync(bin) ? bin : null
  } catch {
    return null
  }
}

const exited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

const waitForExit = (child: ChildProcess, timeoutMs: number): Promise<boolean> =>
  exited(child)
    ? Promise.resolve(true)
    : new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve(true)
        })
      })

export const startEmulator = async (profile: EmulatorProfile = "replicaset"): Promise<Emulator> => {
  const bin = emulatorBinary()
  if (bin === null) throw new Error("The jongodb emulator binary is not installed for this platform.")
  const args = ["--host=127.0.0.1", "--port=0", `--topology-profile=${profile}`]
  if (profile === "replicaset") args.push("--replica-set-name=rs0")
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
  // If the test process ends without its hooks (a crash, a timeout), the emulator goes with it.
  const killOnExit = () => {
    if (!exited(child)) child.kill("SIGKILL")
  }
  process.once("exit", killOnExit)

  const stop = async () => {
    process.removeListener("exit", killOnExit)
    if (exited(child)) return
    child.kill("SIGTERM")
    if (!(await waitForExit(child, STOP_TIMEOUT_MS))) {
      child.kill("SIGKILL")
      await waitForExit(child, STOP_TIMEOUT_MS)
    }
  }

  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = ""
      let err = ""
      const timer = setTimeout(
        () =>
          reject(new Error(`The emulator printed no URL within ${START_TIMEOUT_MS} ms: ${err.slice(-500)}`)),
        START_TIMEOUT_MS
      )
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
        out += chunk
        const match = /^JONGODB_URI=(\S+)$/m.exec(out)
        if (match !== null) {
          clearTimeout(timer)
          const printed = match[1]!
          resolve(`${printed}${printed.includes("?") ? "&" : "?"}serverMonitoringMode=poll`)
        }
      })
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
        err += chunk
      })
      child.once("error", (cause) => {
        clearTimeout(timer)
        reject(cause)
      })
      child.once("exit", (code) => {
        clearTimeout(timer)
        reject(new Error(`The emulator exited (code ${code}) before printing its URL: ${err.slice(-500)}`))
      })
    })
    return { url, stop }
  } catch (cause) {
    await stop()
    throw cause
  }
}
