/**
 * The executor over PGlite: Postgres compiled to WebAssembly, in this process,
 * storing its files in a data directory. One session: statements and
 * transactions run one at a time, which PGlite itself enforces.
 */
import { resolve } from "node:path"
import { PGlite } from "@electric-sql/pglite"
import { DataDirError, lockDataDir } from "./DataDirLock.js"
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

export interface PgliteOptions {
  /** Where the database files live; created when missing. Holds `baton.lock` while open. */
  readonly dataDir: string
}

export const makePgliteExecutor = async (options: PgliteOptions): Promise<SqlExecutor> => {
  const dataDir = resolve(options.dataDir)
  const unlock = lockDataDir(dataDir)
  let db: PGlite
  try {
    db = await PGlite.create(dataDir, { parsers: { [INT8]: (v: string) => Number(v) } })
  } catch (error) {
    unlock()
    const code = (error as NodeJS.ErrnoException).code
    throw new DataDirError(
      `PGlite could not open the data directory ${dataDir}${code === undefined ? "" : ` (${code})`}.`
    )
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
