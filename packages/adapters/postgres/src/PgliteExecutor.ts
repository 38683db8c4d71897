/**
 * The executor over PGlite: Postgres compiled to WebAssembly, in this process,
 * storing its files in a data directory. One session: statements and
 * transactions run one at a time, which PGlite itself enforces.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { PGlite } from "@electric-sql/pglite"
import type { Queryable, Row, SqlExecutor } from "./Executor.js"

const INT8 = 20

interface PgliteQueryable {
  query<R>(text: string, params?: unknown[]): Promise<{ rows: R[] }>
  exec(text: string): Promise<unknown>
}

const queryable = (db: PgliteQueryable): Queryable => ({
  query: async <R extends Row>(s: { readonly text: string }, params: ReadonlyArray<unknown>) =>
    (await db.query<R>(s.text, [...params])).rows,
  exec: async (script) => {
    await db.exec(script)
  }
})

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Thrown when another live process (or this one) already has the data directory open. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number
  ) {
    super(
      `The data directory ${dataDir} is in use by process ${pid}; stop it or choose another BATON_DATA_DIR.`
    )
  }
}

/**
 * Two processes writing one PGlite directory would corrupt it: a lock file
 * beside the directory names the owner; a lock whose process is gone is stale.
 */
const lockDataDir = (dataDir: string): (() => void) => {
  const lockPath = `${dataDir}.lock`
  mkdirSync(dirname(lockPath), { recursive: true })
  for (;;) {
    try {
      const fd = openSync(lockPath, "wx")
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => {
        try {
          unlinkSync(lockPath)
        } catch {
          // Already gone: nothing to release.
        }
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
      const owner = Number(readFileSync(lockPath, "utf8").trim())
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) throw new DataDirInUseError(dataDir, owner)
      unlinkSync(lockPath)
    }
  }
}

export interface PgliteOptions {
  /** Where the database files live; created when missing. */
  readonly dataDir: string
}

export const makePgliteExecutor = async (options: PgliteOptions): Promise<SqlExecutor> => {
  const dataDir = resolve(options.dataDir)
  const unlock = lockDataDir(dataDir)
  let db: PGlite
  try {
    mkdirSync(dataDir, { recursive: true })
    db = await PGlite.create(dataDir, { parsers: { [INT8]: (v: string) => Number(v) } })
  } catch (error) {
    unlock()
    throw error
  }
  return {
    ...queryable(db),
    transaction: (body) => db.transaction((tx) => body(queryable(tx))),
    listen: async (channel, handlers) => {
      // In-process notifications cannot be lost to a broken connection: there is none.
      const unlisten = await db.listen(channel, handlers.onNotification)
      return () => unlisten()
    },
    close: async () => {
      try {
        await db.close()
      } finally {
        unlock()
      }
    }
  }
}
