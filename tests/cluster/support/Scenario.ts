/**
 * One test's traffic against a cluster: the runs it created (only those the
 * API acknowledged with 201), the clients recording their streams, and the
 * final verification — every acknowledged run terminal, every history and
 * every step execution checked.
 */
import { expect } from "vitest"
import { createRunAnswer, getRun, type Json, snapshot } from "./Api.js"
import type { Cluster, ServerProcess } from "./Cluster.js"
import { checkEffects, type EffectsSummary } from "./Effects.js"
import { checkHistories, describeViolations, type RunSnapshot, type StreamHistory } from "./History.js"
import { type Instance, type Recording, recordStream } from "./Sse.js"
import { waitFor, within } from "./Wait.js"

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "limit_exceeded"])

export interface Verified {
  readonly snapshots: ReadonlyMap<string, RunSnapshot>
  readonly histories: ReadonlyArray<StreamHistory>
  readonly effects: EffectsSummary
}

export class Scenario {
  /** Runs whose creation was acknowledged (201). */
  readonly runIds: string[] = []
  readonly recordings: Recording[] = []

  constructor(readonly cluster: Cluster) {}

  /** The live instances, starting with `first` when it is live, then in their order. */
  instancesFrom(first: ServerProcess): () => ReadonlyArray<Instance> {
    return () => {
      const live = this.cluster.live()
      const at = live.indexOf(first)
      return at < 0 ? live : [...live.slice(at), ...live.slice(0, at)]
    }
  }

  /** POST /runs on `on`; the run when acknowledged (kept), else the answer's status. */
  async tryCreate(on: Instance, handler: string, input: unknown): Promise<Json | number> {
    const answer = await createRunAnswer(on, this.cluster.key, { handler, input })
    if (answer.status !== 201) return answer.status
    this.runIds.push(answer.body.id)
    return answer.body
  }

  async create(on: Instance, handler: string, input: unknown): Promise<Json> {
    const created = await this.tryCreate(on, handler, input)
    if (typeof created === "number") throw new Error(`POST /runs on ${on.name} answered ${created}`)
    return created
  }

  /** A client recording `runId`'s stream, connecting first to `from`. */
  follow(runId: string, client: string, from: ServerProcess, switchEvery?: number): Recording {
    const recording = recordStream({
      client,
      runId,
      key: this.cluster.key,
      instances: this.instancesFrom(from),
      ...(switchEvery === undefined ? {} : { switchEvery })
    })
    this.recordings.push(recording)
    return recording
  }

  /**
   * Background load: a `work` run created every `intervalMs` on the live instances in turn, each
   * followed by a client (switching instance every `switchEvery` events). Answers other than 201 and
   * network errors are counted, never retried: what was not acknowledged need not exist.
   */
  startLoad(input: unknown, intervalMs: number, switchEvery = 4): Load {
    const refused = new Map<string, number>()
    let created = 0
    let stopped = false
    const count = (what: string) => refused.set(what, (refused.get(what) ?? 0) + 1)
    const loop = (async () => {
      for (let i = 0; !stopped; i++) {
        const live = this.cluster.live()
        const on = live[i % Math.max(1, live.length)]
        if (on !== undefined) {
          try {
            const run = await this.tryCreate(on, "work", input)
            if (typeof run === "number") count(`HTTP ${run}`)
            else {
              created++
              this.follow(run.id, `load-${i}`, on, switchEvery)
            }
          } catch (error) {
            count(error instanceof Error ? error.message : String(error))
          }
        }
        await new Promise((resolve) => setTimeout(resolve, intervalMs))
      }
    })()
    return {
      created: () => created,
      refused,
      stop: async () => {
        stopped = true
        await loop
      }
    }
  }

  /** Any live instance, taken in turn. */
  private turn = 0
  anyInstance(): Instance {
    const live = this.cluster.live()
    const instance = live[this.turn++ % live.length]
    if (instance === undefined) throw new Error("no live server process")
    return instance
  }

  /** Waits until every acknowledged run is terminal; their final runs by id. */
  async waitAllTerminal(timeoutMs: number): Promise<Map<string, Json>> {
    const done = new Map<string, Json>()
    await waitFor(
      `all ${this.runIds.length} runs to be terminal`,
      async () => {
        for (const id of this.runIds) {
          if (done.has(id)) continue
          const run = await getRun(this.anyInstance(), this.cluster.key, id)
          if (TERMINAL.has(run.status)) done.set(id, run)
        }
        return done.size === this.runIds.length
      },
      { timeoutMs, intervalMs: 200 }
    ).catch((error: unknown) => {
      const pending = this.runIds.filter((id) => !done.has(id))
      throw new Error(`${String(error)}\nStill not terminal: ${pending.join(", ")}`)
    })
    return done
  }

  /**
   * Waits for every recording, snapshots every run (alternating instances), and checks the histories
   * and the step executions; fails the test with every violation found.
   */
  async verify(): Promise<Verified> {
    const histories = await within(
      "the recorded streams",
      30_000,
      Promise.all(this.recordings.map((r) => r.done))
    ).catch((error: unknown) => {
      const open = this.recordings.filter((r) => !r.history.complete).map((r) => r.history)
      const lines = open
        .slice(0, 10)
        .map(
          (h) =>
            `${h.client} ${h.runId}: ${h.connections.map((c) => `${c.instance}(${c.events.at(-1)?.seq ?? c.lastEventId}) ${c.end}`).join(" | ")}`
        )
      throw new Error(
        `${String(error)} ${open.length} client(s) without the terminal event:\n${lines.join("\n")}`
      )
    })
    const snapshots = new Map<string, RunSnapshot>()
    for (const id of this.runIds) snapshots.set(id, await snapshot(this.anyInstance(), this.cluster.key, id))
    const violations = checkHistories(histories, snapshots)
    expect(violations, describeViolations(violations)).toEqual([])
    const effects = checkEffects(this.cluster.effects(), snapshots)
    expect(effects.problems, effects.problems.slice(0, 20).join("\n")).toEqual([])
    return { snapshots, histories, effects }
  }
}

export interface Load {
  /** Runs acknowledged (201). */
  readonly created: () => number
  /** Answers other than 201, and network errors, by status or message. */
  readonly refused: ReadonlyMap<string, number>
  readonly stop: () => Promise<void>
}
