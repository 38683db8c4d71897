/**
 * makeHintHub, the in-process half every adapter's feed uses: a subscriber
 * that reads late gets the newest hint, never a stale one.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import { makeHintHub } from "../src/ports/EventFeed.js"

describe("makeHintHub", () => {
  it.scoped("hands a late reader the newest hint, and every later one", () =>
    Effect.gen(function* () {
      const hub = makeHintHub()
      const hints = yield* hub.subscribe("run_a")
      const pull = yield* Stream.toPull(hints)
      // Three hints before the subscriber reads: only the newest matters.
      hub.publish("run_a", 1)
      hub.publish("run_a", 2)
      hub.publish("run_a", 3)
      expect([...(yield* pull)]).toEqual([3])
      hub.publish("run_a", 4)
      hub.publish("run_a", 3)
      expect([...(yield* pull)]).toEqual([4])
      // Nothing pending: the next pull waits.
      expect(Option.isNone(yield* Effect.timeoutOption(pull, 0))).toBe(true)
      expect(hub.runIds()).toEqual(["run_a"])
    })
  )
})
