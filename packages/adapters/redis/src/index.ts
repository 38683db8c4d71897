export { PREFIX_PATTERN } from "./internal/Keys.js"
export { type RedisBackdoor, redisBackdoor } from "./RedisBackdoor.js"
export {
  DEFAULT_REDIS_URL,
  type RedisRetention,
  type RedisStorageOptions,
  redisStorage
} from "./RedisStorage.js"
