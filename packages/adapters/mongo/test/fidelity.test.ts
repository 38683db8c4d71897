/**
 * What the store gives back is what it was given: payloads that BSON cannot
 * hold as they are (unpaired surrogates, `$` and `.` in keys) survive as JSON
 * text, with their key order; metadata filters stay exact and type-sensitive.
 * Sequential, so it runs on the emulator.
 */
import { Harness, newHandler, newKey, newPrincipal } from "@baton/adapter-conformance"
import { mongoStorage } from "@baton/adapter-mongo"
import {
  DEFAULT_LIMITS,
  DEFAULT_REDACTION_POLICY,
  Engine,
  Id,
  type JsonValue,
  RunState,
  RunStore
} from "@baton/core"
import { Effect } from "effect"
import { MongoClient } from "mongodb"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Emulator, emulatorBinary, startEmulator } from "./Emulator.js"
import { dropDatabase, freshDatabase, mongoBackdoor } from "./support.js"

// Built with JSON.parse so "__proto__" is an own key, as it is in a request body.
const awkward = JSON.parse(
  JSON.stringify({
    z: 1,
    a: [1, "two", null, true, { nested: [[]] }],
    $where: "not an operator",
    "dotted.key": { $inc: 1 },
    text: "nul\u0000inside, lone \ud800 surrogate, emoji 😀",
    big: 2 ** 53 - 1,
    tiny: 5e-324,
    float: 0.1,
    empty: {}
  }).replace('"z":1', '"z":1,"__proto__":{"polluted":true}')
) as JsonValue

const binary = emulatorBinary()

describe.skipIf(binary === null)(
  `payload fidelity on the jongodb emulator${binary === null ? " [skipped: its binary is not installed for this platform]" : ""}`,
  () => {
    let emulator: Emulator
    let raw: MongoClient
    let harness: Harness
    const database = freshDatabase()

    beforeAll(async () => {
      emulator = await startEmulator()
      raw = new MongoClient(emulator.url)
      harness = await Harness.open(
        {
          adapter: mongoStorage({ url: emulator.url, database, serializeWrites: true }),
          backdoor: mongoBackdoor(raw.db(database))
        },
        { capabilities: { concurrentWriters: false, liveFeed: false } }
      )
    })
    afterAll(async () => {
      await harness?.close()
      if (raw !== undefined) await dropDatabase(raw.db(database))
      await raw?.close()
      await emulator?.stop()
    })

    it("returns input, outputs and event payloads exactly, key order included", async () => {
      const principal = newPrincipal()
      const now = Date.now()
      const created = RunState.create(
        {
          id: Id.makeRunId(now),
          customerId: principal.customerId,
          handler: newHandler(),
          input: awkward,
          metadata: {},
          limits: DEFAULT_LIMITS
        },
        // Nothing here looks like a secret: the default policy leaves it as it is.
        { now, redaction: DEFAULT_REDACTION_POLICY }
      )
      const store = <A>(f: (s: RunStore["Type"]) => Effect.Effect<A, unknown>) =>
        harness.run(Effect.flatMap(RunStore, f) as Effect.Effect<A, never, never>)
      await store((s) => s.create({ run: created.record, events: created.events, idempotency: null, now }))
      const run = created.record
      const event = {
        run_id: run.id,
        seq: run.last_seq + 1,
        type: "step.progress",
        timestamp: now,
        payload: { redacted: false, value: awkward }
      }
      expect(
        await store((s) =>
          s.append(run.id, { version: run.version, leaseToken: null }, [event], {
            last_seq: event.seq,
            output: awkward
          })
        )
      ).toEqual({ _tag: "Appended" })

      const stored = await store((s) => s.get(run.id))
      if (stored === null) throw new Error("the run is missing")
      expect(JSON.stringify(stored.input)).toBe(JSON.stringify(awkward))
      expect(JSON.stringify(stored.output)).toBe(JSON.stringify(awkward))
      const events = await store((s) => s.readEvents(run.id, 0, 10))
      expect(JSON.stringify(events[1]?.payload.value)).toBe(JSON.stringify(awkward))
      // The lone surrogate is still one (BSON strings would have turned it into U+FFFD).
      expect((stored.input as { text: string }).text).toContain("\ud800")
      expect(Object.hasOwn(stored.input as object, "__proto__")).toBe(true)
    })

    it("filters metadata by exact pairs, also with dots and dollars in the keys", async () => {
      const principal = newPrincipal()
      const handler = newHandler()
      const create = async (metadata: Record<string, string | number | boolean>) => {
        const result = await harness.run(
          Engine.createRun(principal, { input: 1, handler, metadata }, { idempotencyKey: newKey() })
        )
        if (result._tag !== "Created") throw new Error(result._tag)
        return result.run.id
      }
      const a = await create({ "team.name": "core", $tier: 1 })
      const b = await create({ "team.name": "core", $tier: "1" })
      const c = await create({ "team.name": "edge", $tier: true })
      const ids = async (metadata: Record<string, string | number | boolean>) =>
        (await harness.run(Engine.listRuns(principal, { metadata }))).data.map((r) => r.id)
      expect(await ids({ "team.name": "core" })).toEqual([b, a])
      expect(await ids({ $tier: 1 })).toEqual([a])
      expect(await ids({ $tier: "1" })).toEqual([b])
      expect(await ids({ $tier: true })).toEqual([c])
      expect(await ids({ "team.name": "core", $tier: 1 })).toEqual([a])
      expect(await ids({ team: "core" })).toEqual([])
      expect((await harness.run(Engine.getRun(principal, a))).metadata).toEqual({
        "team.name": "core",
        $tier: 1
      })
    })

    it("stores an idempotency record's expiry as a Date for the TTL index, and the port's ms beside it", async () => {
      const principal = newPrincipal()
      const key = newKey()
      await harness.run(
        Engine.createRun(principal, { input: 1, handler: newHandler() }, { idempotencyKey: key })
      )
      const doc = await raw
        .db(database)
        .collection("idempotency")
        .findOne({ customer_id: principal.customerId, key })
      if (doc === null) throw new Error("no idempotency record")
      expect(doc.expires_at).toBeInstanceOf(Date)
      expect((doc.expires_at as Date).getTime()).toBe((doc.expires_at_ms as number) + 3_600_000)
    })
  }
)
