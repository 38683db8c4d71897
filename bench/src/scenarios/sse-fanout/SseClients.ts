/**
 * N SSE subscribers in the bench process: plain `node:http` requests (a
 * fetch stream per connection costs the client far more, and the client's
 * cost is added to every latency), each timing the frames that carry an
 * emit time.
 */
import { Agent, get, type IncomingMessage } from "node:http"
import { wallClockMs } from "../../support/Stats.js"
import { EMITTED_AT } from "./Protocol.js"

const TIMESTAMP = /"timestamp":"([^"]+)"/

export interface Subscribers {
  /** Connections that got their first bytes. */
  readonly connected: number
  /** Subscriptions refused or broken before their first bytes, by reason (`HTTP 503`, `ECONNRESET`…). */
  readonly refused: ReadonlyMap<string, number>
  /** Frames carrying an emit time received so far, over all connections. */
  readonly delivered: () => number
  /** Connections that ended or failed before `close()`. */
  readonly lost: () => number
  /** emit → client, ms, one sample per frame per connection. */
  readonly fromEmit: ReadonlyArray<number>
  /** the event's stored timestamp → client, ms (millisecond resolution). */
  readonly fromAppend: ReadonlyArray<number>
  readonly close: () => void
}

/** Opens `count` subscriptions, `parallel` at a time, each done once its first bytes arrived. */
export const openSubscribers = async (
  url: string,
  headers: Readonly<Record<string, string>>,
  count: number,
  parallel = 200
): Promise<Subscribers> => {
  const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY })
  const responses: IncomingMessage[] = []
  const fromEmit: number[] = []
  const fromAppend: number[] = []
  let delivered = 0
  let lost = 0
  let closing = false

  const open = () =>
    new Promise<void>((resolve, reject) => {
      const request = get(url, { agent, headers: { ...headers, accept: "text/event-stream" } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume()
          reject(new Error(`HTTP ${res.statusCode}`))
          return
        }
        responses.push(res)
        res.setEncoding("utf8")
        let buffer = ""
        let first = true
        res.on("data", (chunk: string) => {
          const receivedAt = wallClockMs()
          if (first) {
            first = false
            resolve()
          }
          buffer += chunk
          let end = buffer.indexOf("\n\n")
          while (end >= 0) {
            const frame = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const emitted = EMITTED_AT.exec(frame)
            if (emitted !== null) {
              delivered++
              fromEmit.push(receivedAt - Number(emitted[1]))
              const stamp = TIMESTAMP.exec(frame)
              if (stamp !== null) fromAppend.push(receivedAt - Date.parse(stamp[1]!))
            }
            end = buffer.indexOf("\n\n")
          }
        })
        res.on("close", () => {
          if (!closing) lost++
        })
      })
      request.on("error", (error) => {
        if (!closing) lost++
        reject(error)
      })
    })

  let next = 0
  let connected = 0
  const refused = new Map<string, number>()
  const lane = async () => {
    while (next < count) {
      next++
      await open().then(
        () => connected++,
        (error: unknown) => {
          const reason =
            error instanceof Error ? ((error as { code?: string }).code ?? error.message) : String(error)
          refused.set(reason, (refused.get(reason) ?? 0) + 1)
        }
      )
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, lane))
  return {
    connected,
    refused,
    delivered: () => delivered,
    lost: () => lost,
    fromEmit,
    fromAppend,
    close: () => {
      closing = true
      for (const res of responses) res.destroy()
      agent.destroy()
    }
  }
}
