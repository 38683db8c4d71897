/**
 * Plain `fetch` calls to one instance of the cluster: no retries, so a test
 * sees each answer (503s included) exactly as the server gave it.
 */
import { randomUUID } from "node:crypto"
import type { ObservedEvent, RunSnapshot } from "./History.js"
import type { Instance } from "./Sse.js"

// biome-ignore lint/suspicious/noExplicitAny: response bodies are whatever the server sent; tests assert their shape
export type Json = any

/** How long one API call may take before it counts as a hang. */
const CALL_TIMEOUT_MS = 15_000

export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: Json
}

export const call = async (
  instance: Instance,
  key: string,
  method: string,
  path: string,
  options: { json?: unknown; headers?: Record<string, string> } = {}
): Promise<Answer> => {
  const response = await fetch(`${instance.url}/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(options.json === undefined ? {} : { "content-type": "application/json" }),
      ...options.headers
    },
    ...(options.json === undefined ? {} : { body: JSON.stringify(options.json) }),
    // A request the server never answers fails the test with its name instead of hanging it.
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS)
  }).catch((error: unknown) => {
    throw new Error(`${method} ${path} on ${instance.name}: ${String(error)}`)
  })
  const text = await response.text()
  let body: Json
  try {
    body = text === "" ? undefined : JSON.parse(text)
  } catch {
    body = text
  }
  return { status: response.status, headers: response.headers, body }
}

const expectStatus = (answer: Answer, status: number, what: string): Json => {
  if (answer.status !== status)
    throw new Error(`${what}: expected HTTP ${status}, got ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body
}

/** POST /runs with a fresh idempotency key (or `idempotencyKey`); the raw answer. */
export const createRunAnswer = (
  instance: Instance,
  key: string,
  body: { handler: string; input: unknown; metadata?: Record<string, string> },
  idempotencyKey: string = randomUUID()
): Promise<Answer> =>
  call(instance, key, "POST", "/runs", { json: body, headers: { "idempotency-key": idempotencyKey } })

/** POST /runs that must answer 201; the run. */
export const createRun = async (
  instance: Instance,
  key: string,
  body: { handler: string; input: unknown; metadata?: Record<string, string> }
): Promise<Json> =>
  expectStatus(await createRunAnswer(instance, key, body), 201, `POST /runs on ${instance.name}`)

export const getRun = async (instance: Instance, key: string, runId: string): Promise<Json> =>
  expectStatus(
    await call(instance, key, "GET", `/runs/${runId}`),
    200,
    `GET /runs/${runId} on ${instance.name}`
  )

/** The run's whole log, page by page. */
export const readLog = async (instance: Instance, key: string, runId: string): Promise<ObservedEvent[]> => {
  const log: ObservedEvent[] = []
  for (;;) {
    const page = expectStatus(
      await call(instance, key, "GET", `/runs/${runId}/events?after_seq=${log.length}&limit=100`),
      200,
      `GET /runs/${runId}/events on ${instance.name}`
    )
    log.push(...(page.data as ObservedEvent[]))
    if (page.has_more !== true) return log
  }
}

/** GET and the whole log of a run, from `instance`; the log first, so GET is at least as new. */
export const snapshot = async (instance: Instance, key: string, runId: string): Promise<RunSnapshot> => {
  const log = await readLog(instance, key, runId)
  const run = await getRun(instance, key, runId)
  const { request_id: _, ...rest } = run
  return { run: rest, log }
}
