export {
  ConfigError,
  type ConfigProblem,
  type LogLevel,
  loadConfig,
  Secret,
  type ServerConfig,
  type StorageName
} from "./Config.js"
export { type BatonFileConfig, CONFIG_FILE, loadConfigFile } from "./ConfigFile.js"
export { type DemoHandlerOptions, demoHandler, makeDemoHandler } from "./DemoHandler.js"
export { type RunningServer, type StartServerOptions, startServer } from "./Server.js"
