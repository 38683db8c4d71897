/**
 * The cluster suite (issue 8: several server processes, one store): real `packages/server`
 * processes on loopback ports share one store per lane; runs are created,
 * streamed, signalled and executed across them while processes are killed,
 * stopped and cut off from storage. Every test records every event every
 * client saw and checks it (support/History.ts), and counts every step
 * execution by a side effect outside the engine (support/Effects.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { call, getRun } from "./Api.js"
import { Cluster, SERVER_LEASE_MS, type ServerProcess } from "./Cluster.js"
import { LANES, type Lane, type LaneName, type LaneStore } from "./Lanes.js"
import { Scenario } from "./Scenario.js"
import { waitFor, within } from "./Wait.js"

/**
 * Runs whose worker is SIGKILLed mid-step, in rounds of one kill each. A killed worker's runs wait
 * for its leases to expire (SERVER_LEASE_MS), so each round costs a lease.
 */
const KILLED_RUNS = 24
const KILL_ROUNDS = SERVER_LEASE_MS <= 5_000 ? 3 : 1
/**
 * Bounds of the tests, not expectations: a server process starts in about 1.5 s on an idle two-core
 * machine and in 7 s or more when other test files load it.
 */
const SHORT_TEST_MS = 90_000
const LONG_TEST_MS = 150_000
/** The SIGTERMed instance's lease: far longer than the test waits, so only a release lets others resume its runs. */
const DRAINED_LEASE_MS = 120_000

const clusterSuite = (lane: Lane) => {
  let store: LaneStore | null = null
  const clusters: Cluster[] = []

  beforeAll(async () => {
    store = await lane.open()
  })
  afterAll(async () => {
    await store?.close()
  })
  // Every test's processes are gone after it, whatever happened.
  afterEach(async () => {
    const open = clusters.splice(0)
    for (const cluster of open) await cluster.close()
    for (const cluster of open) expect(cluster.leftovers(), "server processes left behind").toEqual([])
  })

  /** A cluster on this lane's store, closed after the test; skips the test when the store is absent. */
  const newCluster = (skip: (note?: string) => void): Cluster => {
    if (store === null) {
      skip(`${lane.name} not found (see the warning above)`)
      throw new Error("unreachable")
    }
    const cluster = new Cluster(store)
    clusters.push(cluster)
    return cluster
  }

  const workerOf = (server: ServerProcess) => new RegExp(`-${server.pid}-[0-9a-f]+$`)

  it(
    "a run created on A is streamed from B and executed by C's worker",
    async (ctx) => {
      const cluster = newCluster(ctx.skip)
      const a = await cluster.start({ workers: 0 })
      const [b, c] = await Promise.all([cluster.start({ workers: 0 }), cluster.start({ workers: 4 })])
      const scenario = new Scenario(cluster)

      const run = await scenario.create(a, "work", { steps: 3, deltas: 3 })
      scenario.follow(run.id, "b-only", b)
      await scenario.waitAllTerminal(20_000)
      const { snapshots, histories } = await scenario.verify()

      const log = snapshots.get(run.id)!.log
      expect(snapshots.get(run.id)!.run.status).toBe("succeeded")
      const started = log.filter((e) => e.type === "run.started")
      expect(started.map((e) => (e.payload.value as { worker_id: string }).worker_id)).toEqual([
        expect.stringMatching(workerOf(c))
      ])
      expect(histories[0]!.connections.map((x) => x.instance)).toEqual([b.name])
      expect(new Set(cluster.effects().map((line) => line.pid))).toEqual(new Set([c.pid]))
    },
    SHORT_TEST_MS
  )

  it(
    "a run waiting for input is signalled through another instance and resumes",
    async (ctx) => {
      const cluster = newCluster(ctx.skip)
      const a = await cluster.start({ workers: 0 })
      const [b, c] = await Promise.all([cluster.start({ workers: 0 }), cluster.start({ workers: 4 })])
      const scenario = new Scenario(cluster)

      const run = await scenario.create(a, "approval", {})
      scenario.follow(run.id, "a-then-any", a, 2)
      await waitFor("the run to await input", async () => {
        const seen = await getRun(b, cluster.key, run.id)
        return seen.status === "awaiting_input"
      })
      const signalled = await call(b, cluster.key, "POST", `/runs/${run.id}/signal`, {
        json: { action: "approve", comment: "via B" }
      })
      expect(signalled.status, JSON.stringify(signalled.body)).toBe(202)
      const final = (await scenario.waitAllTerminal(20_000)).get(run.id)
      expect(final.status).toBe("succeeded")
      expect(final.output).toEqual({ approved: true, comment: "via B" })
      const { snapshots } = await scenario.verify()
      const types = snapshots.get(run.id)!.log.map((e) => e.type)
      expect(types).toContain("run.signal_received")
      expect(types.filter((t) => t === "run.started")).toHaveLength(2)
      // Both executions ran on C; the step before the wait ran once, not again on resume.
      expect(
        cluster
          .effects()
          .filter((l) => l.phase === "enter")
          .map((l) => [l.step, l.pid])
      ).toEqual([
        ["before:0", c.pid],
        ["after:0", c.pid]
      ])
    },
    SHORT_TEST_MS
  )

  it(
    `SIGKILL of the worker executing a step, ${KILLED_RUNS} runs: all end, no finished step runs again, streams stay whole`,
    async (ctx) => {
      const cluster = newCluster(ctx.skip)
      const a = await cluster.start({ workers: 0 })
      let worker = await cluster.start({ workers: 32 })
      const scenario = new Scenario(cluster)
      const killed = new Map<string, { hold: number; pid: number }>()
      const perRound = Math.ceil(KILLED_RUNS / KILL_ROUNDS)
      for (let round = 0; round < KILL_ROUNDS; round++) {
        const gate = `kill-${round}`
        const ids: string[] = []
        for (let i = 0; i < perRound; i++) {
          const hold = i % 4
          const on = i % 2 === 0 ? a : worker
          const run = await scenario.create(on, "work", { steps: 4, deltas: 2, hold: { step: hold, gate } })
          ids.push(run.id)
          killed.set(run.id, { hold, pid: worker.pid })
          // One client starting on the API process, one on the worker about to die; both switch instance.
          scenario.follow(run.id, `r${round}.${i}.a`, a, 3)
          scenario.follow(run.id, `r${round}.${i}.w`, worker, 5)
        }
        const victim = worker
        await waitFor(`round ${round}: every run held mid-step by ${victim.name}`, () =>
          ids.every((id) => {
            const { hold } = killed.get(id)!
            return cluster
              .effects()
              .some(
                (l) => l.run === id && l.step === `s${hold}:0` && l.phase === "enter" && l.pid === victim.pid
              )
          })
        )
        const exit = await cluster.kill(victim)
        expect(exit.signal).toBe("SIGKILL")
        worker = await cluster.start({ workers: 32 })
        cluster.openGate(gate)
        // The killed worker's runs wait for its leases to expire, then the new worker resumes them.
        await scenario.waitAllTerminal(SERVER_LEASE_MS + 30_000)
      }

      const { snapshots, effects } = await scenario.verify()
      expect(snapshots.size).toBeGreaterThanOrEqual(20)
      const enters = cluster.effects().filter((l) => l.phase === "enter")
      for (const [id, { hold, pid }] of killed) {
        const { run, log } = snapshots.get(id)!
        expect(run.status, id).toBe("succeeded")
        expect(
          log.some(
            (e) =>
              e.type === "run.requeued" && (e.payload.value as { reason: string }).reason === "lease_expired"
          ),
          `${id} was taken over after its lease expired`
        ).toBe(true)
        const ran = (step: number) => enters.filter((l) => l.run === id && l.step === `s${step}:0`)
        // Finished before the kill: ran once, on the killed worker, and were replayed, not re-run.
        for (let s = 0; s < hold; s++)
          expect(
            ran(s).map((l) => [l.attempt, l.pid]),
            `${id} s${s}`
          ).toEqual([[1, pid]])
        // Cut short by the kill: re-run once, as its next attempt, elsewhere.
        const cut = ran(hold)
        expect(
          cut.map((l) => l.attempt),
          `${id} s${hold}`
        ).toEqual([1, 2])
        expect(cut[1]!.pid, `${id} s${hold}`).not.toBe(pid)
      }
      expect(effects.reruns).toBe(killed.size)
      // Every client resumed on other instances; those on a killed worker lost their connection to the kill.
      for (const r of scenario.recordings)
        expect(new Set(r.history.connections.map((c) => c.instance)).size, r.history.client).toBeGreaterThan(
          1
        )
      const cutByKill = scenario.recordings.filter((r) =>
        r.history.connections.some(
          (c) => c.instance !== a.name && c.end !== "terminal" && c.end !== "switched by the client"
        )
      )
      expect(cutByKill.length).toBeGreaterThan(0)
    },
    LONG_TEST_MS
  )

  it(
    "SIGTERM of one instance under load: it drains and exits 0, nothing is lost, its SSE clients resume elsewhere",
    async (ctx) => {
      const cluster = newCluster(ctx.skip)
      const a = await cluster.start({ workers: 16, leaseMs: DRAINED_LEASE_MS })
      const scenario = new Scenario(cluster)
      // Runs that A is executing and that will not finish within its grace period.
      const held: string[] = []
      for (let i = 0; i < 4; i++) {
        const run = await scenario.create(a, "work", {
          steps: 3,
          deltas: 1,
          hold: { step: 1, gate: "never" }
        })
        held.push(run.id)
        scenario.follow(run.id, `held-${i}`, a)
      }
      await waitFor("A to hold its runs mid-step", () =>
        held.every((id) =>
          cluster.effects().some((l) => l.run === id && l.step === "s1:0" && l.pid === a.pid)
        )
      )
      const [b, c] = await Promise.all([cluster.start({ workers: 8 }), cluster.start({ workers: 8 })])
      // Every client of these starts on A.
      for (let i = 0; i < 12; i++) {
        const run = await scenario.create([a, b, c][i % 3]!, "work", { steps: 5, deltas: 2, delayMs: 20 })
        scenario.follow(run.id, `a-client-${i}`, a)
      }
      const aClients = [...scenario.recordings]
      const load = scenario.startLoad({ steps: 4, deltas: 2, delayMs: 20 }, 60)
      await waitFor("A's clients to be streaming", () =>
        aClients.every((r) => (r.history.connections[0]?.events.length ?? 0) > 0)
      )

      cluster.signal(a, "SIGTERM")
      const exit = await within("A's graceful shutdown", 30_000, a.exited)
      expect(exit, a.output()).toEqual({ code: 0, signal: null })
      await load.stop()
      expect(load.created()).toBeGreaterThan(0)
      // Released at the end of A's drain, not left to expire: others resume them long before A's lease would end.
      await scenario.waitAllTerminal(DRAINED_LEASE_MS / 4)

      const { snapshots } = await scenario.verify()
      for (const [id, { run }] of snapshots) expect(run.status, id).toBe("succeeded")
      for (const id of held) {
        const log = snapshots.get(id)!.log
        const workers = log
          .filter((e) => e.type === "run.started")
          .map((e) => (e.payload.value as { worker_id: string }).worker_id)
        expect(workers[0], id).toMatch(workerOf(a))
        expect(workers.at(-1), id).not.toMatch(workerOf(a))
      }
      // A's clients that were still streaming when it stopped went on elsewhere: every connection to A that
      // A ended (or refused) before the terminal event is followed by one to another instance.
      const cutByA = scenario.recordings.filter((r) =>
        r.history.connections.some(
          (x) => x.instance === a.name && x.end !== "terminal" && x.end !== "switched by the client"
        )
      )
      expect(cutByA.length).toBeGreaterThanOrEqual(held.length)
      for (const r of cutByA) {
        const connections = r.history.connections
        const lastCut = connections.findLastIndex((x) => x.instance === a.name && x.end !== "terminal")
        expect(
          connections.slice(lastCut + 1).map((x) => x.instance),
          `${r.history.client}: ${JSON.stringify(connections.map((x) => [x.instance, x.end]))}`
        ).toContainEqual(expect.not.stringMatching(`^${a.name}$`))
        expect(connections.at(-1)!.end).toBe("terminal")
      }
    },
    LONG_TEST_MS
  )

  it(
    "storage interruptions under load: 503 STORAGE_UNAVAILABLE with retry-after, recovery by itself, nothing acknowledged lost",
    async (ctx) => {
      const cluster = newCluster(ctx.skip)
      const store = cluster.store
      const servers = [await cluster.start({ workers: 8 })]
      servers.push(...(await Promise.all([cluster.start({ workers: 8 }), cluster.start({ workers: 8 })])))
      const scenario = new Scenario(cluster)
      const slow = { steps: 8, deltas: 2, delayMs: 40 }
      for (let i = 0; i < 12; i++) {
        const run = await scenario.create(servers[i % 3]!, "work", slow)
        scenario.follow(run.id, `client-${i}`, servers[(i + 1) % 3]!, 4)
      }
      const load = scenario.startLoad(slow, 80)

      // Backends terminated: the pools reconnect by themselves (each round waits for a connection that was
      // not dropped yet, then drops everything).
      const dropped = new Set<string>()
      for (let i = 0; i < 3; i++) {
        await waitFor("the servers to hold a fresh connection", async () =>
          (await store.connections()).some((id) => !dropped.has(id))
        )
        const ids = await store.dropConnections()
        expect(ids.length).toBeGreaterThan(0)
        for (const id of ids) dropped.add(id)
      }

      // An outage: connections dropped and refused until restored.
      await store.cut()
      try {
        // Every kind of call on every instance, at once: each must come back 503 STORAGE_UNAVAILABLE with
        // retry-after (a call that was already in flight when the cut came may still succeed: retried).
        const probeRun = scenario.runIds[0]!
        const probes = servers.flatMap((server) => [
          {
            server,
            what: "GET /runs/{id}",
            call: () => call(server, cluster.key, "GET", `/runs/${probeRun}`)
          },
          {
            server,
            what: "POST /runs",
            call: () =>
              call(server, cluster.key, "POST", "/runs", {
                json: { handler: "work", input: slow },
                headers: { "idempotency-key": `outage-${server.name}` }
              })
          },
          {
            server,
            what: "GET /runs/{id}/events",
            call: () => call(server, cluster.key, "GET", `/runs/${probeRun}/events`)
          },
          {
            server,
            what: "GET /readyz",
            call: async () => {
              const response = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(15_000) })
              return { status: response.status, headers: response.headers, body: await response.json() }
            }
          }
        ])
        const answers = await Promise.all(
          probes.map((probe) =>
            waitFor(
              `${probe.what} on ${probe.server.name} to answer 503`,
              async () => {
                const answer = await probe.call()
                return answer.status === 503 ? answer : undefined
              },
              { timeoutMs: 30_000 }
            )
          )
        )
        for (const [i, answer] of answers.entries()) {
          const what = `${probes[i]!.what} on ${probes[i]!.server.name}`
          expect(answer.body.reason_code, what).toBe("STORAGE_UNAVAILABLE")
          expect(answer.headers.get("retry-after"), what).toMatch(/^\d+$/)
        }
        // Held until the background load has met the outage too.
        await waitFor(
          "a POST /runs of the load to be refused with 503",
          () => (load.refused.get("HTTP 503") ?? 0) > 0
        )
      } finally {
        await store.restore()
      }

      for (const server of servers)
        await waitFor(
          `${server.name} to be ready again`,
          async () => (await fetch(`${server.url}/readyz`)).status === 200
        )
      // Requests succeed again on every instance, with no restart.
      for (const server of servers) {
        const run = await scenario.create(server, "work", { steps: 2 })
        scenario.follow(run.id, `after-${server.name}`, server)
      }
      await load.stop()
      expect(load.refused.get("HTTP 503") ?? 0, JSON.stringify([...load.refused])).toBeGreaterThan(0)
      await scenario.waitAllTerminal(SERVER_LEASE_MS + 30_000)
      const { snapshots } = await scenario.verify()
      for (const [id, { run }] of snapshots) expect(run.status, id).toBe("succeeded")
      for (const server of servers) expect(server.alive(), `${server.name} is still up`).toBe(true)
    },
    LONG_TEST_MS
  )
}

/**
 * The cluster tests on one lane's store: a `describe` when the lane can run, else one skipped test
 * whose name says why. Each lane has a test file of its own, so vitest runs the lanes side by side.
 */
export const defineClusterSuite = (name: LaneName): void => {
  const lane = LANES.find((l) => l.name === name)
  if (lane === undefined) throw new Error(`no lane ${name}`)
  if (lane.unavailable !== null) it.skip(`${lane.name} lane: ${lane.unavailable}`, () => {})
  else describe(`${lane.name} lane`, () => clusterSuite(lane))
}
