/** The cluster suite (support/Suite.ts) on Redis; the lane's availability is in support/Lanes.ts. */
import { defineClusterSuite } from "./support/Suite.js"

defineClusterSuite("redis")
