/**
 * Schema migrations: numbered scripts compiled into the package, applied in
 * one transaction under an advisory lock (so processes starting together
 * migrate once), recorded in a ledger table, and refused when the database
 * was migrated by a newer Baton.
 */
import { type SqlExecutor, statement } from "./Executor.js"
import { MIGRATIONS } from "./migrations/index.js"
import type { Migration } from "./migrations/Migration.js"

/**
 * Schema names are plain identifiers: safe to quote, and short enough to name a
 * LISTEN channel; `pg_*` and `information_schema` belong to Postgres.
 */
export const SCHEMA_NAME = /^(?!pg_|information_schema$)[a-z_][a-z0-9_]{0,47}$/

const requireSchemaName = (schema: string): void => {
  if (!SCHEMA_NAME.test(schema)) throw new TypeError(`${schema} is not a schema name Baton accepts.`)
}

export const LATEST_VERSION = MIGRATIONS.at(-1)?.version ?? 0

/** The database's schema is not one this Baton can use as it is. */
export class SchemaVersionError extends Error {
  constructor(
    message: string,
    readonly found: number,
    readonly expected: number
  ) {
    super(message)
  }
}

const q = (schema: string) => `"${schema}"`

const ledger = (schema: string) => `${q(schema)}.baton_migrations`

const appliedVersion = async (db: Pick<SqlExecutor, "query">, schema: string): Promise<number> => {
  const exists = await db.query<{ found: boolean }>(
    statement("ledger_exists", "SELECT to_regclass($1) IS NOT NULL AS found"),
    [`${q(schema)}.baton_migrations`]
  )
  if (exists[0]?.found !== true) return 0
  const rows = await db.query<{ version: number | null }>(
    statement("ledger_max", `SELECT max(version) AS version FROM ${ledger(schema)}`),
    []
  )
  return rows[0]?.version ?? 0
}

const tooNew = (found: number) =>
  new SchemaVersionError(
    `The database schema is at version ${found}, newer than this Baton knows (${LATEST_VERSION}): upgrade Baton.`,
    found,
    LATEST_VERSION
  )

export interface MigrateResult {
  readonly from: number
  readonly to: number
  readonly applied: ReadonlyArray<Pick<Migration, "version" | "name">>
}

/**
 * Applies the pending migrations to `schema` (created when missing). A schema
 * already current is only read: a role without CREATE can start on it.
 */
export const migrate = async (db: SqlExecutor, schema: string): Promise<MigrateResult> => {
  requireSchemaName(schema)
  const current = await appliedVersion(db, schema)
  if (current > LATEST_VERSION) throw tooNew(current)
  if (current === LATEST_VERSION) return { from: current, to: LATEST_VERSION, applied: [] }
  return db.transaction(async (tx) => {
    await tx.query(statement("migrate_lock", "SELECT pg_advisory_xact_lock(hashtext($1))"), [
      `baton.migrate.${schema}`
    ])
    await tx.exec(
      `CREATE SCHEMA IF NOT EXISTS ${q(schema)};
       CREATE TABLE IF NOT EXISTS ${ledger(schema)} (
         version integer PRIMARY KEY,
         name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       );`
    )
    const from = await appliedVersion(tx, schema)
    if (from > LATEST_VERSION) throw tooNew(from)
    const pending = MIGRATIONS.filter((m) => m.version > from)
    for (const m of pending) {
      await tx.exec(m.sql.replaceAll("__SCHEMA__", q(schema)))
      await tx.query(
        statement("ledger_insert", `INSERT INTO ${ledger(schema)} (version, name) VALUES ($1, $2)`),
        [m.version, m.name]
      )
    }
    return { from, to: LATEST_VERSION, applied: pending.map(({ version, name }) => ({ version, name })) }
  })
}

/** Fails unless `schema` is exactly at the version this Baton expects (for deployments that migrate apart). */
export const checkSchema = async (db: SqlExecutor, schema: string): Promise<void> => {
  requireSchemaName(schema)
  const found = await appliedVersion(db, schema)
  if (found > LATEST_VERSION) throw tooNew(found)
  if (found < LATEST_VERSION)
    throw new SchemaVersionError(
      `The database schema is at version ${found}; this Baton needs ${LATEST_VERSION}: run \`baton migrate\`.`,
      found,
      LATEST_VERSION
    )
}
