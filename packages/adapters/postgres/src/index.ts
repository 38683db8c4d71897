export { DataDirError, DataDirInUseError } from "./DataDirLock.js"
export type { ListenHandlers, Queryable, Row, SqlExecutor, Statement } from "./Executor.js"
export {
  checkSchema,
  LATEST_VERSION,
  type MigrateResult,
  migrate,
  SCHEMA_NAME,
  SchemaVersionError
} from "./Migrate.js"
export { makePgliteExecutor, type PgliteOptions } from "./PgliteExecutor.js"
export { makePgPoolExecutor, type PgPoolOptions } from "./PgPoolExecutor.js"
export type { FeedMode } from "./PostgresEventFeed.js"
export {
  DEFAULT_SCHEMA,
  migratePostgres,
  type PgliteStorageOptions,
  type PostgresStorageOptions,
  pgliteStorage,
  postgresStorage,
  type SqlStorageOptions,
  sqlStorage
} from "./PostgresStorage.js"
