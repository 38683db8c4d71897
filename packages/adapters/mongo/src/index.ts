export { COLLECTION_NAMES, INDEXES } from "./Collections.js"
export {
  DEFAULT_DATABASE,
  DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
  databaseInUrl,
  MALFORMED_URL_MESSAGE,
  STANDALONE_MESSAGE
} from "./Connection.js"
export type { FeedMode } from "./MongoEventFeed.js"
export {
  DEFAULT_POLL_INTERVAL_MS,
  type MongoClientOptions,
  type MongoStorageOptions,
  type MongoUrlOptions,
  mongoStorage,
  POLL_INTERVAL_BOUNDS
} from "./MongoStorage.js"
