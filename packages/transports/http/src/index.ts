export { ConnectionError, createHttpClient, type HttpClientOptions } from "./Client.js"
export { type BatonRoutesOptions, batonApp, batonRoutes, healthRoutes } from "./Routes.js"
export type { SseOptions } from "./Sse.js"
