import { expect, it } from "vitest"
import { main } from "./quickstart.js"

it("runs the quickstart: a run is created, cancelled and its log streamed", async () => {
  const events = await main()
  expect(events.map((e) => [e.seq, e.type])).toEqual([
    [1, "run.queued"],
    [2, "run.cancelled"]
  ])
})
