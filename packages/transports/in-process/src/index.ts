export { createInProcessClient } from "./InProcessClient.js"
