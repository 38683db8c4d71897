import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runAdapterConformance } from "@baton/adapter-conformance"
import { makePgliteExecutor, sqlStorage } from "@baton/adapter-postgres"
import { sqlBackdoor } from "./support.js"

// PGlite is one session: the cases that need several connections writing at once are skipped by name.
runAdapterConformance(
  "pglite",
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-pglite-"))
    // PGlite allows one owner per data directory: the back door reads through the adapter's executor.
    const db = await makePgliteExecutor({ dataDir: join(dir, "data") })
    return {
      adapter: sqlStorage(db, { name: "pglite" }),
      backdoor: sqlBackdoor((text, params) => db.query({ name: "", text }, params), "baton"),
      close: async () => {
        await db.close()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  },
  { capabilities: { concurrentWriters: false } }
)
