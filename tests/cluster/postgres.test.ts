/** The cluster suite (support/Suite.ts) on Postgres; the lane's availability is in support/Lanes.ts. */
import { defineClusterSuite } from "./support/Suite.js"

defineClusterSuite("postgres")
