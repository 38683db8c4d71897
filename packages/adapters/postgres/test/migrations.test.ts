import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { locateService } from "@baton/adapter-conformance"
import {
  checkSchema,
  LATEST_VERSION,
  makePgPoolExecutor,
  migrate,
  postgresStorage,
  SchemaVersionError
} from "@baton/adapter-postgres"
import { createEngine } from "@baton/core"
import { afterAll, describe, expect, it } from "vitest"
import { renderMigrationsModule } from "../scripts/renderMigrations.js"
import { dropSchema, freshSchema, rawPool } from "./support.js"

const migrationsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "migrations")

describe("compiled migrations", () => {
  it("match the .sql files (run `pnpm --filter @baton/adapter-postgres migrations:compile` after editing one)", () => {
    expect(readFileSync(join(migrationsDir, "index.ts"), "utf8")).toBe(renderMigrationsModule(migrationsDir))
  })
})

const postgres = await locateService("postgres")

if (postgres === null)
  it.skip("postgres migrations: no Postgres found (set BATON_TEST_POSTGRES_URL)", () => {})
else
  describe("migrations on Postgres", () => {
    const pool = rawPool(postgres.url)
    const schemas: string[] = []
    const schema = () => {
      const s = freshSchema()
      schemas.push(s)
      return s
    }
    afterAll(async () => {
      for (const s of schemas) await dropSchema(pool, s)
      await pool.end()
    })

    it("creates the schema, records each version in the ledger, and is a no-op the second time", async () => {
      const s = schema()
      const db = makePgPoolExecutor({ connectionString: postgres.url, max: 2 })
      try {
        const first = await migrate(db, s)
        expect(first).toMatchObject({ from: 0, to: LATEST_VERSION })
        expect(first.applied.map((m) => m.version)).toEqual(
          [...Array(LATEST_VERSION).keys()].map((i) => i + 1)
        )
        const second = await migrate(db, s)
        expect(second).toEqual({ from: LATEST_VERSION, to: LATEST_VERSION, applied: [] })
        const ledger = await pool.query(`SELECT version, name FROM "${s}".baton_migrations ORDER BY version`)
        expect(ledger.rows).toEqual([{ version: 1, name: "init" }])
        await expect(checkSchema(db, s)).resolves.toBeUndefined()
      } finally {
        await db.close()
      }
    })

    it("applies once when eight processes start together (advisory lock)", async () => {
      const s = schema()
      const dbs = Array.from({ length: 8 }, () =>
        makePgPoolExecutor({ connectionString: postgres.url, max: 1 })
      )
      try {
        const results = await Promise.all(dbs.map((db) => migrate(db, s)))
        expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1)
        const ledger = await pool.query(`SELECT count(*)::int AS n FROM "${s}".baton_migrations`)
        expect(ledger.rows[0].n).toBe(LATEST_VERSION)
      } finally {
        await Promise.all(dbs.map((db) => db.close()))
      }
    })

    it("refuses a schema migrated by a newer Baton, and the engine does not start on it", async () => {
      const s = schema()
      const db = makePgPoolExecutor({ connectionString: postgres.url, max: 1 })
      try {
        await migrate(db, s)
        await pool.query(
          `INSERT INTO "${s}".baton_migrations (version, name) VALUES ($1, 'from_the_future')`,
          [LATEST_VERSION + 1]
        )
        await expect(migrate(db, s)).rejects.toBeInstanceOf(SchemaVersionError)
        await expect(checkSchema(db, s)).rejects.toThrow(/newer than this Baton/)
      } finally {
        await db.close()
      }
      const engine = createEngine({ storage: postgresStorage({ url: postgres.url, schema: s }) })
      try {
        await expect(engine.ping()).rejects.toMatchObject({
          reason_code: "STORAGE_UNAVAILABLE",
          message: expect.stringMatching(/newer than this Baton knows \(\d+\): upgrade Baton/)
        })
      } finally {
        await engine.dispose()
      }
    })

    it("with migrate: false, refuses an unmigrated schema and says to run baton migrate", async () => {
      const s = schema()
      const engine = createEngine({
        storage: postgresStorage({ url: postgres.url, schema: s, migrate: false })
      })
      try {
        await expect(engine.ping()).rejects.toMatchObject({
          reason_code: "STORAGE_UNAVAILABLE",
          message: expect.stringContaining("run `baton migrate`")
        })
        const exists = await pool.query("SELECT to_regnamespace($1) IS NOT NULL AS found", [s])
        expect(exists.rows[0].found).toBe(false)
      } finally {
        await engine.dispose()
      }
    })

    it("rejects a schema name that is not a plain identifier before touching the database", () => {
      expect(() => postgresStorage({ url: postgres.url, schema: 'x"; DROP TABLE y; --' })).toThrow(TypeError)
      expect(() => postgresStorage({ url: postgres.url, schema: "Upper" })).toThrow(/schema must match/)
    })
  })
