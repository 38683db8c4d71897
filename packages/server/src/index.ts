export {
  ConfigError,
  type ConfigProblem,
  type LogLevel,
  loadConfig,
  type PostgresConfig,
  type PostgresFeed,
  Secret,
  type ServerConfig,
  type StorageName
} from "./Config.js"
export { type BatonFileConfig, CONFIG_FILE, loadConfigFile } from "./ConfigFile.js"
export { type DemoHandlerOptions, demoHandler, makeDemoHandler } from "./DemoHandler.js"
export { type RunningServer, type StartServerOptions, startServer } from "./Server.js"
export {
  describeStorage,
  type MigrationReport,
  migrateStorage,
  StorageStartError,
  storageFor
} from "./ServerStorage.js"
