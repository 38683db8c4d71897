/**
 * The feed's machinery against scripted sources (the emulator has no change
 * streams): hints from a stream, the reopen after a break with the last resume
 * token, the poll that replaces hints lost meanwhile, and poll-only mode.
 */
import { waitUntil } from "@baton/adapter-conformance"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { type Change, type ChangeCursor, type HintSources, makeHintFeed } from "../src/HintFeed.js"

/** A change stream the test drives: push changes, break it, see how it was opened. */
class ScriptedStream implements ChangeCursor {
  private readonly queue: Array<Change | Error | null> = []
  private waiting: ((item: Change | Error | null) => void) | null = null
  private token: unknown = null
  closed = false
  constructor(readonly openedAfter: unknown) {}

  push(item: Change | Error | null): void {
    if (this.waiting !== null) {
      const w = this.waiting
      this.waiting = null
      w(item)
    } else this.queue.push(item)
  }

  next = async (): Promise<Change | null> => {
    const item =
      this.queue.length > 0
        ? this.queue.shift()!
        : await new Promise<Change | Error | null>((resolve) => {
            this.waiting = resolve
          })
    if (item instanceof Error) throw item
    if (item !== null) this.token = `after:${item.runId}:${item.seq}`
    return item
  }

  resumeToken = () => this.token
  close = async () => {
    this.closed = true
    this.push(null)
  }
}

/** Subscribes to `runId` and collects its hints into an array until the scope closes. */
const collect = async (feed: ReturnType<typeof makeHintFeed>["feed"], runId: string) => {
  const scope = await Effect.runPromise(Scope.make())
  const stream = await Effect.runPromise(Scope.extend(feed.subscribe(runId), scope))
  const seen: number[] = []
  const fiber = Effect.runFork(Stream.runForEach(stream, (seq) => Effect.sync(() => seen.push(seq))))
  return {
    seen,
    close: async () => {
      await Effect.runPromise(Fiber.interrupt(fiber))
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

describe("the event feed's hint machinery", () => {
  it("passes change-stream hints to the run's subscribers only", async () => {
    const streams: ScriptedStream[] = []
    const sources: HintSources = {
      lastSeqs: async () => [],
      openChanges: async (after) => {
        const s = new ScriptedStream(after)
        streams.push(s)
        return s
      }
    }
    const hints = makeHintFeed(sources, { pollIntervalMs: 10 })
    await hints.start()
    const a = await collect(hints.feed, "run_a")
    const b = await collect(hints.feed, "run_b")
    streams[0]!.push({ runId: "run_a", seq: 2 })
    streams[0]!.push({ runId: "run_a", seq: 3 })
    await waitUntil("run_a's hint", () => a.seen.includes(3), { timeoutMs: 5_000, intervalMs: 2 })
    expect(b.seen).toEqual([])
    expect(hints.streaming()).toBe(true)
    await a.close()
    await b.close()
    await hints.stop()
    expect(streams[0]!.closed).toBe(true)
  })

  it("reopens a broken stream after its last resume token, then polls so a hint lost meanwhile arrives", async () => {
    const streams: ScriptedStream[] = []
    // What the store holds: run_a reached seq 9 while the stream was down.
    let stored: ReadonlyArray<Change> = []
    let polls = 0
    const sources: HintSources = {
      lastSeqs: async (ids) => {
        polls++
        return stored.filter((c) => ids.includes(c.runId))
      },
      openChanges: async (after) => {
        const s = new ScriptedStream(after)
        streams.push(s)
        return s
      }
    }
    // A poll interval far longer than the test: only the poll after the reopen can deliver seq 9.
    const hints = makeHintFeed(sources, { pollIntervalMs: 60_000, reopenBackoffMs: { min: 1, max: 5 } })
    await hints.start()
    const a = await collect(hints.feed, "run_a")
    streams[0]!.push({ runId: "run_a", seq: 4 })
    await waitUntil("the hint before the break", () => a.seen.includes(4), {
      timeoutMs: 5_000,
      intervalMs: 2
    })
    stored = [{ runId: "run_a", seq: 9 }]
    const pollsBefore = polls
    streams[0]!.push(new Error("the stream broke"))
    await waitUntil("the reopen", () => streams.length === 2, { timeoutMs: 5_000, intervalMs: 2 })
    expect(streams[1]!.openedAfter).toBe("after:run_a:4")
    await waitUntil("the hint from the poll after the reopen", () => a.seen.includes(9), {
      timeoutMs: 5_000,
      intervalMs: 2
    })
    expect(polls).toBeGreaterThan(pollsBefore)
    // The reopened stream carries on.
    streams[1]!.push({ runId: "run_a", seq: 10 })
    await waitUntil("a hint from the new stream", () => a.seen.includes(10), {
      timeoutMs: 5_000,
      intervalMs: 2
    })
    await a.close()
    await hints.stop()
  })

  it("starts afresh when the server lost the history after the token", async () => {
    const opened: unknown[] = []
    const streams: ScriptedStream[] = []
    const historyLost = new Error("ChangeStreamHistoryLost")
    const sources: HintSources = {
      lastSeqs: async () => [{ runId: "run_a", seq: 5 }],
      openChanges: async (after) => {
        opened.push(after)
        if (after !== null && after !== undefined) throw historyLost
        const s = new ScriptedStream(after)
        streams.push(s)
        return s
      },
      isHistoryLost: (cause) => cause === historyLost
    }
    const hints = makeHintFeed(sources, { pollIntervalMs: 60_000, reopenBackoffMs: { min: 1, max: 5 } })
    await hints.start()
    const a = await collect(hints.feed, "run_a")
    streams[0]!.push({ runId: "run_a", seq: 1 })
    await waitUntil("the first hint", () => a.seen.includes(1), { timeoutMs: 5_000, intervalMs: 2 })
    streams[0]!.push(new Error("the stream broke"))
    await waitUntil("a fresh stream", () => streams.length === 2, { timeoutMs: 5_000, intervalMs: 2 })
    expect(opened).toEqual([null, "after:run_a:1", null])
    await waitUntil("the poll's hint", () => a.seen.includes(5), { timeoutMs: 5_000, intervalMs: 2 })
    await a.close()
    await hints.stop()
  })

  it("polls every interval while the stream cannot be reopened", async () => {
    let opens = 0
    let stored = 1
    const first = new ScriptedStream(null)
    const sources: HintSources = {
      lastSeqs: async () => [{ runId: "run_a", seq: stored }],
      openChanges: async () => {
        opens++
        if (opens === 1) return first
        throw new Error("the server is away")
      }
    }
    const hints = makeHintFeed(sources, { pollIntervalMs: 5, reopenBackoffMs: { min: 1, max: 5 } })
    await hints.start()
    const a = await collect(hints.feed, "run_a")
    first.push(new Error("the stream broke"))
    await waitUntil("the stream to be down", () => !hints.streaming(), { timeoutMs: 5_000, intervalMs: 2 })
    stored = 7
    await waitUntil("a polled hint", () => a.seen.includes(7), { timeoutMs: 5_000, intervalMs: 2 })
    expect(opens).toBeGreaterThan(1)
    await a.close()
    await hints.stop()
  })

  it("in poll mode, sends each new seq once, not the same seq on every tick", async () => {
    let stored = 3
    let polls = 0
    const hints = makeHintFeed(
      {
        lastSeqs: async () => {
          polls++
          return [{ runId: "run_a", seq: stored }]
        }
      },
      { pollIntervalMs: 5 }
    )
    await hints.start()
    const a = await collect(hints.feed, "run_a")
    await waitUntil("the first hint", () => a.seen.includes(3), { timeoutMs: 5_000, intervalMs: 2 })
    const after = polls
    await waitUntil("more polls", () => polls > after + 3, { timeoutMs: 5_000, intervalMs: 2 })
    stored = 4
    await waitUntil("the next hint", () => a.seen.includes(4), { timeoutMs: 5_000, intervalMs: 2 })
    expect(a.seen).toEqual([3, 4])
    expect(hints.streaming()).toBe(false)
    await a.close()
    await hints.stop()
  })
})
