export { type BatonRoutesOptions, batonRoutes, healthRoutes } from "./Routes.js"
