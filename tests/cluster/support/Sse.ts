/**
 * A recording SSE client. It follows one run's event stream across as many
 * connections and instances as it takes, resuming each time with
 * `Last-Event-ID: <highest seq received>`, and records every event exactly as
 * the server sent it — it drops nothing and deduplicates nothing, so the
 * history checker sees what a client on the wire saw (the library client
 * `createHttpClient` drops repeated seqs, which would hide a server's
 * duplicate).
 *
 * Connections move on to the next instance of the cluster when one ends
 * before the run's terminal event (a server stopped or killed), when it is
 * refused, and — to exercise resuming anywhere — every `switchEvery` events.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { type EventSourceMessage, EventSourceParserStream } from "eventsource-parser/stream"
import type { Connection, ObservedEvent, StreamHistory } from "./History.js"
import { isTerminalType } from "./History.js"

export interface Instance {
  readonly name: string
  readonly url: string
}

export interface RecordOptions {
  readonly client: string
  readonly runId: string
  readonly key: string
  /** The instances to connect to, asked before every connection; connections take them in turn. */
  readonly instances: () => ReadonlyArray<Instance>
  /** Hang up after this many events on one connection and resume on the next instance (default: never). */
  readonly switchEvery?: number
  /** Give up (the history stays incomplete) after this long; default 120 s. */
  readonly deadlineMs?: number
}

export interface Recording {
  readonly history: StreamHistory
  /** Resolves with the history once the terminal event came, or the recorder gave up or was stopped. */
  readonly done: Promise<StreamHistory>
  readonly stop: () => void
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export const recordStream = (options: RecordOptions): Recording => {
  const history: StreamHistory = {
    client: options.client,
    runId: options.runId,
    connections: [],
    complete: false,
    failure: null
  }
  const stopped = new AbortController()
  const deadline = Date.now() + (options.deadlineMs ?? 120_000)

  const connectOnce = async (instance: Instance, last: number, turn: number): Promise<number> => {
    const connection: Connection = { instance: instance.name, lastEventId: last, events: [], end: "open" }
    history.connections.push(connection)
    const hangUp = new AbortController()
    const onStop = () => hangUp.abort()
    stopped.signal.addEventListener("abort", onStop, { once: true })
    let reader: ReadableStreamDefaultReader<EventSourceMessage> | null = null
    try {
      const response = await fetch(`${instance.url}/v1/runs/${options.runId}/events/stream`, {
        headers: {
          authorization: `Bearer ${options.key}`,
          accept: "text/event-stream",
          ...(last > 0 ? { "last-event-id": String(last) } : {})
        },
        signal: hangUp.signal
      })
      if (!response.ok || response.body === null) {
        connection.end = `HTTP ${response.status}: ${(await response.text()).slice(0, 200)}`
        return last
      }
      const messages = response.body
        .pipeThrough(new TextDecoderStream())
        .pipeThrough(new EventSourceParserStream())
        .getReader()
      reader = messages
      for (;;) {
        const read = await messages.read()
        if (read.done) {
          connection.end = "ended by the server before the terminal event"
          return last
        }
        if (read.value.event !== "run_event") continue
        const event = JSON.parse(read.value.data) as ObservedEvent
        connection.events.push(event)
        last = Math.max(last, event.seq)
        if (isTerminalType(event.type)) {
          connection.end = "terminal"
          history.complete = true
          return last
        }
        if (
          options.switchEvery !== undefined &&
          connection.events.length >= options.switchEvery + (turn % 3)
        ) {
          connection.end = "switched by the client"
          return last
        }
      }
    } catch (error) {
      if (connection.end === "open") connection.end = `failed: ${messageOf(error)}`
      return last
    } finally {
      stopped.signal.removeEventListener("abort", onStop)
      hangUp.abort()
      reader?.cancel().catch(() => {})
    }
  }

  const run = async (): Promise<StreamHistory> => {
    let last = 0
    let turn = 0
    let failuresInARow = 0
    while (!history.complete && !stopped.signal.aborted) {
      if (Date.now() > deadline) {
        history.failure = `gave up after ${options.deadlineMs ?? 120_000} ms without the terminal event`
        break
      }
      const instances = options.instances()
      const instance = instances[turn % Math.max(1, instances.length)]
      turn++
      if (instance === undefined) {
        await sleep(100)
        continue
      }
      const before = last
      last = await connectOnce(instance, last, turn)
      const connection = history.connections.at(-1)
      const progressed = last > before || connection?.end === "terminal"
      failuresInARow = progressed ? 0 : failuresInARow + 1
      // A refused or empty connection (an instance going away, storage down): back off a little.
      if (!progressed) await sleep(Math.min(1000, 50 * failuresInARow))
    }
    if (stopped.signal.aborted && !history.complete) history.failure = "stopped before the terminal event"
    return history
  }

  return { history, done: run(), stop: () => stopped.abort() }
}
