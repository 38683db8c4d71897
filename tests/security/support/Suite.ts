/**
 * The security suite on one storage lane: one real server process for the
 * whole file (support/Server.ts), shared by the fuzz, cross-tenant, timing and
 * redaction tests, and gone afterwards.
 */
import { afterAll, beforeAll, describe, expect } from "vitest"
import { LANES, type LaneName, type LaneStore } from "../../cluster/support/Lanes.js"
import { type SecurityServer, startSecurityServer } from "./Server.js"

export interface LaneContext {
  readonly lane: LaneName
  readonly store: LaneStore
  readonly server: SecurityServer
}

/** What each part of the suite registers its tests with: `get()` is the started lane, or null to skip. */
export type Register = (get: () => LaneContext | null, lane: LaneName) => void

export const defineSecuritySuite = (laneName: LaneName, parts: ReadonlyArray<Register>): void => {
  const lane = LANES.find((l) => l.name === laneName)
  if (lane === undefined) throw new Error(`no lane ${laneName}`)
  let context: LaneContext | null = null
  let store: LaneStore | null = null

  describe(`security on ${laneName}`, () => {
    beforeAll(async () => {
      store = await lane.open()
      if (store === null) return
      const server = await startSecurityServer(store)
      context = { lane: laneName, store, server }
    }, 120_000)

    afterAll(async () => {
      const cluster = context?.server.cluster
      try {
        if (cluster !== undefined) {
          await cluster.close()
          expect(cluster.leftovers(), "server processes left behind").toEqual([])
        }
      } finally {
        await store?.close()
      }
    }, 60_000)

    for (const register of parts) register(() => context, laneName)
  })
}
