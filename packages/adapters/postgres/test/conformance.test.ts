import { locateService, runAdapterConformance } from "@baton/adapter-conformance"
import { type FeedMode, postgresStorage } from "@baton/adapter-postgres"
import { it } from "vitest"
import { dropSchema, freshSchema, poolQuery, rawPool, sqlBackdoor } from "./support.js"

const postgres = await locateService("postgres")

const suite = (name: string, feed: FeedMode) =>
  runAdapterConformance(name, async () => {
    if (postgres === null) throw new Error("unreachable")
    const schema = freshSchema()
    const pool = rawPool(postgres.url)
    return {
      adapter: postgresStorage({ url: postgres.url, schema, feed }),
      backdoor: sqlBackdoor(poolQuery(pool), schema),
      close: async () => {
        await dropSchema(pool, schema)
        await pool.end()
      }
    }
  })

if (postgres === null)
  it.skip("postgres conformance: no Postgres found (set BATON_TEST_POSTGRES_URL)", () => {})
else {
  suite("postgres", "listen")
  // Behind a transaction-pooling proxy there is no LISTEN: hints come from the adapter's poller alone.
  suite("postgres (poll-only feed)", "poll")
}
