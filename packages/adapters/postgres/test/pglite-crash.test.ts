/**
 * PGlite as the embedded default must survive what a laptop or a container
 * does to it: the owning process killed with SIGKILL mid-life. The data is
 * there afterwards, the dead owner's lock is taken over, and a live owner's
 * lock is respected.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { DataDirInUseError, makePgliteExecutor, pgliteStorage } from "@baton/adapter-postgres"
import { createEngine } from "@baton/core"
import { afterAll, describe, expect, it } from "vitest"

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = join(here, "..", "..", "..", "..")

/** Starts the owner process and resolves with it and the run it created. */
const startOwner = (dataDir: string): Promise<{ child: ChildProcess; runId: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--conditions=@baton/source", join(here, "fixtures", "pgliteOwner.ts"), dataDir],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] }
    )
    let out = ""
    let err = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const match = /created (run_\w+)/.exec(out)
      if (match !== null) resolve({ child, runId: match[1]! })
    })
    child.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString()
    })
    child.on("exit", (code) =>
      reject(new Error(`the owner exited (${code}) before creating its run: ${err}`))
    )
  })

const killed = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

describe("pglite: the owning process killed with SIGKILL", () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-pglite-crash-"))
  const children: ChildProcess[] = []
  afterAll(async () => {
    await Promise.all(children.map(killed))
    rmSync(dir, { recursive: true, force: true })
  })

  it("refuses the directory while its owner lives, then keeps every run after the owner is killed", async () => {
    const dataDir = join(dir, "data")
    const { child, runId } = await startOwner(dataDir)
    children.push(child)

    const refused = await makePgliteExecutor({ dataDir }).then(
      async (db) => {
        await db.close()
        return null
      },
      (error: unknown) => error
    )
    expect(refused).toBeInstanceOf(DataDirInUseError)
    expect((refused as DataDirInUseError).pid).toBe(child.pid)

    await killed(child)

    const engine = createEngine({ storage: pgliteStorage({ dataDir }), config: { handlers: null } })
    try {
      const run = await engine.getRun(runId)
      expect(run).toMatchObject({ id: runId, status: "queued", input: { survives: "SIGKILL" } })
      expect((await engine.readEvents(runId)).data.map((e) => e.type)).toEqual(["run.queued"])
    } finally {
      await engine.dispose()
    }
    // Two PGlite starts and a child process compiled by tsx: ~10 s alone, past 30 s on a loaded machine.
  }, 90_000)
})
