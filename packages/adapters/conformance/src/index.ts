/**
 * The adapter conformance suite. An adapter's test file is one line:
 *
 *   runAdapterConformance("memory", async () => ({ adapter: memoryStorage(s), backdoor }))
 *
 * `makeAdapter` runs once for the suite; cases isolate themselves by using a
 * fresh customer and handler name each, so a shared database is fine.
 */
import { afterAll, beforeAll, describe } from "vitest"
import { appendCases } from "./cases/append.js"
import { claimCases } from "./cases/claim.js"
import { createCases } from "./cases/create.js"
import { eventCases } from "./cases/events.js"
import { keyCases } from "./cases/keys.js"
import { listCases } from "./cases/list.js"
import { tenancyCases } from "./cases/tenancy.js"
import { timerCases } from "./cases/timers.js"
import { workerCases } from "./cases/worker.js"
import {
  type AdapterUnderTest,
  type Capabilities,
  type ConformanceOptions,
  DEFAULT_CAPABILITIES,
  Harness
} from "./Harness.js"

export * from "./Harness.js"

export const runAdapterConformance = (
  name: string,
  makeAdapter: () => Promise<AdapterUnderTest>,
  options: ConformanceOptions = {}
): void => {
  const caps: Capabilities = { ...DEFAULT_CAPABILITIES, ...options.capabilities }
  describe(`adapter conformance: ${name}`, () => {
    let harness: Harness | undefined
    beforeAll(async () => {
      harness = await Harness.open(await makeAdapter(), options)
    })
    afterAll(async () => {
      await harness?.close()
    })
    const h = (): Harness => {
      if (harness === undefined) throw new Error("the adapter did not open")
      return harness
    }
    createCases(h, caps)
    appendCases(h, caps)
    claimCases(h, caps)
    timerCases(h)
    eventCases(h)
    listCases(h)
    tenancyCases(h)
    keyCases(h)
    workerCases(h, caps)
  })
}
export {
  isReachable,
  LOCAL_DEFAULTS,
  type LocateOptions,
  locateService,
  requiredServices,
  SERVICE_ENV,
  type ServiceLocation,
  type ServiceName
} from "./Services.js"
export { waitUntil } from "./Wait.js"
