/**
 * The races the review found, each driven step by step: a creator stalled at a
 * chosen point (a gate in its script call), Redis's clock moved on with
 * `elapse` (no sleeps), and the store's answers checked against what is stored.
 *
 * 1. idempotent create: a creator that dies after create_run, or stalls between
 *    its key claim and create_run, never lets a retry create a second run;
 * 2. a claimer that finds a run still being created never leaves it unindexed;
 * 3. list pages by (created_at, id), skipping nothing and repeating nothing;
 * 4. with retention, a replay after the run expired creates a new run;
 * 5. a list during a create never drops the new run's list entry, and only
 *    expired runs' entries are ever removed (by the expiry sweep).
 */
import { Idempotency, RunState, type RunStoreEncoded } from "@baton/core"
import { Either } from "effect"
import { Redis } from "ioredis"
import { afterAll, describe, expect, it, vi } from "vitest"
import { keyLayout } from "../src/internal/Keys.js"
import { redisBackdoor } from "../src/RedisBackdoor.js"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"
import { elapse, Gate, idempotency, makeStore, newRun, run, settle, token } from "./support/scenario.js"

const location = await findRedis()

/** A store whose create_run calls wait at the gate first. */
const stallCreate = (gate: Gate) => (scripts: import("../src/internal/Scripts.js").Scripts) => ({
  ...scripts,
  createRun: async (...args: ReadonlyArray<string | number>) => {
    await gate.pass()
    return scripts.createRun(...args)
  }
})

if (location === null) {
  describe("redis races", () => {
    it.skip("redis not found: set BATON_TEST_REDIS_URL (or start redis on 127.0.0.1:6379)", () => {})
  })
} else {
  describe("redis races", () => {
    const client = new Redis(location.url)
    const prefixes: string[] = []
    const fresh = () => {
      const prefix = uniquePrefix("races")
      prefixes.push(prefix)
      return { prefix, keys: keyLayout(prefix), backdoor: redisBackdoor(client, prefix) }
    }
    const customer = () => `cust_${token()}`
    const handler = () => `h_${token()}`
    const listIds = async (store: RunStoreEncoded, customerId: string, limit = 100) =>
      (await run(store.list({ customerId }, null, limit))).runs.map((r) => r.id)

    afterAll(async () => {
      for (const prefix of prefixes) await dropPrefix(client, prefix)
      await client.quit()
      await location.stop()
    })

    describe("1. idempotent create", () => {
      it("a creator that dies after create_run (its confirm lost): a retry past the pending window replays its run", async () => {
        const { prefix } = fresh()
        const dying = makeStore(client, prefix, {
          wrap: (s) => ({
            ...s,
            confirmIdempotencyKey: () => Promise.reject(new Error("ECONNRESET"))
          })
        })
        const retrying = makeStore(client, prefix)
        const cust = customer()
        const now = Date.now()
        const first = newRun(cust, handler(), now)
        const firstAnswer = await settle(
          dying.create({ ...first, run: first.record, idempotency: idempotency(first, "k", now), now })
        )

        await elapse(client, prefix, 31_000)
        const later = now + 31_000
        const second = newRun(cust, first.record.handler, later)
        const retry = await run(
          retrying.create({
            ...second,
            run: second.record,
            idempotency: idempotency(second, "k", later),
            now: later
          })
        )
        expect(retry).toMatchObject({ _tag: "Replayed", run: { id: first.record.id } })
        expect(await run(retrying.get(second.record.id))).toBeNull()
        expect(await listIds(retrying, cust)).toEqual([first.record.id])
        // The run is stored and its key names it: answering 503 would make the client retry for nothing.
        expect(firstAnswer).toMatchObject({ _tag: "Right", right: { _tag: "Created" } })
      })

      it("a creator stalled between its key claim and create_run: the retry that takes the key over wins, the creator replays it", async () => {
        const { prefix } = fresh()
        const gate = new Gate()
        const slow = makeStore(client, prefix, { wrap: stallCreate(gate) })
        const retrying = makeStore(client, prefix)
        const cust = customer()
        const h = handler()
        const now = Date.now()
        const first = newRun(cust, h, now)
        const slowAnswer = settle(
          slow.create({ ...first, run: first.record, idempotency: idempotency(first, "k", now), now })
        )
        await gate.arrived
        await elapse(client, prefix, 31_000)
        const later = now + 31_000
        const second = newRun(cust, h, later)
        const retry = await run(
          retrying.create({
            ...second,
            run: second.record,
            idempotency: idempotency(second, "k", later),
            now: later
          })
        )
        gate.release()
        const answers = [Either.getOrThrow(await slowAnswer), retry]
        // Exactly one Created; both answers name the same run, and only that run is stored.
        expect(answers.filter((a) => a._tag === "Created")).toHaveLength(1)
        const ids = new Set(answers.map((a) => (a._tag === "KeyReused" ? a.runId : a.run.id)))
        expect(ids.size).toBe(1)
        const [winner] = ids
        const loser = winner === first.record.id ? second.record.id : first.record.id
        expect(await run(retrying.get(loser))).toBeNull()
        expect(await listIds(retrying, cust)).toEqual([winner])
      })

      it("a confirm that finds the key naming another run does not answer Created", async () => {
        const { prefix, keys } = fresh()
        const plain = makeStore(client, prefix)
        const cust = customer()
        const h = handler()
        const now = Date.now()
        // Run X holds the key by the time our confirm runs (e.g. our record outlived its expires_at).
        const x = newRun(cust, h, now)
        await run(plain.create({ ...x, run: x.record, idempotency: null, now }))
        const ours = newRun(cust, h, now + 1)
        const racing = makeStore(client, prefix, {
          wrap: (scripts) => ({
            ...scripts,
            confirmIdempotencyKey: async (...args: ReadonlyArray<string | number>) => {
              await client.hset(keys.idempotency(cust, "k"), "run_id", x.record.id, "state", "confirmed")
              return scripts.confirmIdempotencyKey(...args)
            }
          })
        })
        const answer = await settle(
          racing.create({ ...ours, run: ours.record, idempotency: idempotency(ours, "k", now), now })
        )
        expect(answer).toMatchObject({ _tag: "Right", right: { _tag: "Replayed", run: { id: x.record.id } } })
      })

      it("a young pending key whose run is missing answers 503, never Created", async () => {
        const { prefix } = fresh()
        const gate = new Gate()
        const slow = makeStore(client, prefix, { wrap: stallCreate(gate) })
        const retrying = makeStore(client, prefix)
        const cust = customer()
        const now = Date.now()
        const first = newRun(cust, handler(), now)
        const slowAnswer = settle(
          slow.create({ ...first, run: first.record, idempotency: idempotency(first, "k", now), now })
        )
        await gate.arrived
        const second = newRun(cust, first.record.handler, now + 1)
        const retry = await settle(
          retrying.create({ ...second, run: second.record, idempotency: idempotency(second, "k", now), now })
        )
        expect(retry).toMatchObject({ _tag: "Left", left: { _tag: "StorageError" } })
        gate.release()
        expect(await slowAnswer).toMatchObject({ _tag: "Right", right: { _tag: "Created" } })
        expect(await listIds(retrying, cust)).toEqual([first.record.id])
      })
    })

    describe("2. claim and timer indexes", () => {
      const claimAll = (store: RunStoreEncoded, h: string, now: number) =>
        run(store.claim({ workerId: "w", handlers: [h], leaseMs: 30_000, max: 10, now }))

      it("a claimer that finds the run of a creator stalled past the stale limit missing: the run is never stored unindexed", async () => {
        const { prefix } = fresh()
        const gate = new Gate()
        const slow = makeStore(client, prefix, { wrap: stallCreate(gate) })
        const other = makeStore(client, prefix)
        const cust = customer()
        const h = handler()
        const now = Date.now()
        const first = newRun(cust, h, now)
        const slowAnswer = settle(
          slow.create({ ...first, run: first.record, idempotency: idempotency(first, "k", now), now })
        )
        await gate.arrived
        await elapse(client, prefix, 61_000)
        expect(await claimAll(other, h, now + 61_000)).toEqual([])
        gate.release()
        const answer = await slowAnswer
        const stored = await run(other.get(first.record.id))
        if (stored !== null) {
          // Stored: it must be claimable.
          expect(answer).toMatchObject({ _tag: "Right", right: { _tag: "Created" } })
          expect((await claimAll(other, h, now + 62_000)).map((r) => r.id)).toEqual([first.record.id])
        } else {
          // Refused: the client is told to retry, and its retry creates a claimable run.
          expect(answer).toMatchObject({ _tag: "Left", left: { _tag: "StorageError" } })
          const later = now + 62_000
          const second = newRun(cust, h, later)
          expect(
            await run(
              other.create({
                ...second,
                run: second.record,
                idempotency: idempotency(second, "k", later),
                now: later
              })
            )
          ).toMatchObject({ _tag: "Created" })
          expect((await claimAll(other, h, later + 1)).map((r) => r.id)).toEqual([second.record.id])
        }
      })

      it("a claimer whose clock runs 2 minutes ahead does not drop a run being created (hint ages are Redis's clock)", async () => {
        const { prefix } = fresh()
        const gate = new Gate()
        const slow = makeStore(client, prefix, { wrap: stallCreate(gate) })
        const claimer = makeStore(client, prefix)
        const h = handler()
        const now = Date.now()
        const first = newRun(customer(), h, now)
        const slowAnswer = settle(slow.create({ ...first, run: first.record, idempotency: null, now }))
        await gate.arrived
        vi.useFakeTimers({ toFake: ["Date"] })
        try {
          vi.setSystemTime(now + 120_000)
          expect(await claimAll(claimer, h, now + 120_000)).toEqual([])
        } finally {
          vi.useRealTimers()
        }
        gate.release()
        expect(await slowAnswer).toMatchObject({ _tag: "Right", right: { _tag: "Created" } })
        expect((await claimAll(claimer, h, now + 1)).map((r) => r.id)).toEqual([first.record.id])
      })
    })

    describe("3. list paging", () => {
      it("skips no live run when entries without a run sit between pages", async () => {
        const { prefix, keys } = fresh()
        const store = makeStore(client, prefix)
        const cust = customer()
        const h = handler()
        // Old creation times: entries without a run look like expired runs' to an age rule.
        const base = Date.now() - 3_600_000
        const live: string[] = []
        const add = async (at: number) => {
          const r = newRun(cust, h, at)
          await run(store.create({ ...r, run: r.record, idempotency: null, now: at }))
          live.push(r.record.id)
        }
        for (let i = 0; i < 20; i++) await add(base + i)
        for (let i = 0; i < 54; i++)
          await client.zadd(keys.customerRuns(cust), String(base + 100 + i), `run_orphan${i}`)
        for (let i = 0; i < 10; i++) await add(base + 1_000 + i)
        const ids = await listIds(store, cust, 50)
        expect(new Set(ids)).toEqual(new Set(live))
        expect(ids).toHaveLength(30)
      })

      it("repeats no run when a run is created between two pages of one list call", async () => {
        const { prefix, keys } = fresh()
        const cust = customer()
        const h = handler()
        let hooked = false
        let store: RunStoreEncoded | null = null
        const plain = makeStore(client, prefix)
        const hookedClient = new Proxy(client, {
          get(target, prop) {
            if (prop === "zrange")
              return async (...args: Parameters<Redis["zrange"]>) => {
                const reply = await (target.zrange as (...a: unknown[]) => Promise<string[]>)(...args)
                if (!hooked && args[0] === keys.customerRuns(cust)) {
                  hooked = true
                  const at = Date.now() + 10_000
                  const r = newRun(cust, h, at)
                  await run(plain.create({ ...r, run: r.record, idempotency: null, now: at }))
                }
                return reply
              }
            const value = Reflect.get(target, prop, target)
            return typeof value === "function" ? value.bind(target) : value
          }
        })
        store = makeStore(client, prefix, { client: hookedClient })
        const now = Date.now()
        const live: string[] = []
        for (let i = 0; i < 6; i++) {
          const r = newRun(cust, h, now - 100 + i)
          await run(plain.create({ ...r, run: r.record, idempotency: null, now }))
          live.push(r.record.id)
        }
        // Recent entries without a run (creates in flight) fill the first page.
        for (let i = 0; i < 63; i++)
          await client.zadd(keys.customerRuns(cust), String(now + 1_000 + i), `run_inflight${i}`)
        const ids = await listIds(store, cust, 50)
        expect(hooked).toBe(true)
        expect(new Set(ids).size).toBe(ids.length)
        for (const id of live) expect(ids).toContain(id)
      })
    })

    describe("4 and 5. retention", () => {
      const finish = async (store: RunStoreEncoded, created: ReturnType<typeof newRun>, now: number) => {
        const decided = RunState.transition(created.record, RunState.RunCommand.RequestCancel({}), {
          now,
          redaction: (await import("@baton/core")).DEFAULT_REDACTION_POLICY
        })
        if (Either.isLeft(decided) || decided.right._tag !== "Transition") throw new Error("cancel refused")
        expect(
          await run(
            store.append(
              created.record.id,
              { version: 1, leaseToken: null },
              decided.right.events,
              decided.right.patch
            )
          )
        ).toEqual({ _tag: "Appended" })
      }

      it("a replay after the run expired by retention creates a new run (not 503 for the key's lifetime)", async () => {
        const { prefix, backdoor } = fresh()
        const store = makeStore(client, prefix, { finishedRunTtlMs: 1_000 })
        const cust = customer()
        const h = handler()
        const now = Date.now()
        const first = newRun(cust, h, now)
        const body = { q: 1 }
        await run(
          store.create({ ...first, run: first.record, idempotency: idempotency(first, "k", now, body), now })
        )
        await finish(store, first, now + 1)
        await elapse(client, prefix, 2_000)
        expect(await run(store.get(first.record.id))).toBeNull()
        const later = now + 2_000
        const second = newRun(cust, h, later)
        const replay = await settle(
          store.create({
            ...second,
            run: second.record,
            idempotency: idempotency(second, "k", later, body),
            now: later
          })
        )
        expect(replay).toMatchObject({
          _tag: "Right",
          right: { _tag: "Created", run: { id: second.record.id } }
        })
        expect(await backdoor.rawIdempotency(cust, "k")).toMatchObject({ run_id: second.record.id })
        expect(await listIds(store, cust)).toEqual([second.record.id])
        // The key is still scoped: another body is refused with the new run's id.
        const third = newRun(cust, h, later + 1)
        expect(
          await run(
            store.create({
              ...third,
              run: third.record,
              idempotency: idempotency(third, "k", later + 1, { q: 2 }),
              now: later + 1
            })
          )
        ).toMatchObject({ _tag: "KeyReused", runId: second.record.id })
        expect(Idempotency.DEFAULT_IDEMPOTENCY_TTL_MS).toBeGreaterThan(2_000)
      })

      it("an expired run's list entry is swept once its keys are gone, never before", async () => {
        const { prefix, keys } = fresh()
        const store = makeStore(client, prefix, { finishedRunTtlMs: 60_000 })
        const cust = customer()
        const now = Date.now()
        const created = newRun(cust, handler(), now)
        await run(store.create({ ...created, run: created.record, idempotency: null, now }))
        await finish(store, created, now + 1)
        await run(store.dueTimers(now + 2, 10))
        expect(await client.zscore(keys.customerRuns(cust), created.record.id)).not.toBeNull()
        await elapse(client, prefix, 61_000)
        await run(store.dueTimers(now + 61_000, 10))
        expect(await client.zscore(keys.customerRuns(cust), created.record.id)).toBeNull()
      })

      it("a list while a run is being created (its creator's clock 11 minutes behind) keeps the run's list entry", async () => {
        const { prefix } = fresh()
        const gate = new Gate()
        const slow = makeStore(client, prefix, { wrap: stallCreate(gate) })
        const reader = makeStore(client, prefix)
        const cust = customer()
        const behind = Date.now() - 11 * 60_000
        const created = newRun(cust, handler(), behind)
        const answer = settle(
          slow.create({ ...created, run: created.record, idempotency: null, now: behind })
        )
        await gate.arrived
        expect(await listIds(reader, cust)).toEqual([])
        gate.release()
        expect(await answer).toMatchObject({ _tag: "Right", right: { _tag: "Created" } })
        expect(await listIds(reader, cust)).toEqual([created.record.id])
      })
    })
  })
}
