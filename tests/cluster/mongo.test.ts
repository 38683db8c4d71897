/** The cluster suite (support/Suite.ts) on Mongo; the lane's availability is in support/Lanes.ts. */
import { defineClusterSuite } from "./support/Suite.js"

defineClusterSuite("mongo")
