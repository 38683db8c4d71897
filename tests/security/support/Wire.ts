/**
 * Sending one request and judging its answer, for the fuzz suite.
 *
 * Two ways to send: `fetch` for requests it accepts, and `node:net` raw
 * HTTP/1.1 bytes for those it refuses (CR/LF or control bytes in headers,
 * non-UTF-8 bytes, absurd request lines, odd methods).
 *
 * What counts as a good answer (`judge`):
 * - the status is below 500, always;
 * - an answer of the application (it carries `x-request-id`) with status ≥ 400
 *   has the error envelope `{ error, reason_code, request_id }` with a known
 *   reason code, and a HEAD answer no body;
 * - an answer without `x-request-id` is node's HTTP parser refusing bytes it
 *   cannot parse (or headers over its 16 KiB limit) before the application saw
 *   them: it must be 400 or 431 with no body. That is not a 5xx, and no
 *   application code ran, so it has no envelope;
 * - a raw connection the server closes without a byte is a failure;
 * - no body contains a stack trace, a database's error text or a secret.
 */
import { connect } from "node:net"
import { ReasonCode } from "@baton/core"

/** Every reason code a client may see (SPEC §4's table and packages/core/src/Errors.ts). */
export const KNOWN_REASON_CODES: ReadonlySet<string> = new Set(ReasonCode.literals)

/** How long one request may take before the server counts as hung. */
export const REQUEST_TIMEOUT_MS = 15_000

export interface WireAnswer {
  readonly status: number
  /** Lower-case header names → values (the last one of repeated headers). */
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
  /** Raw requests: the server closed the connection (always true for them, they ask for it). */
  readonly via: "fetch" | "raw"
}

export interface FetchRequest {
  readonly method: string
  /** Path and query, starting with `/`. */
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string | Uint8Array
}

export const sendFetch = async (baseUrl: string, request: FetchRequest): Promise<WireAnswer> => {
  const response = await fetch(`${baseUrl}${request.path}`, {
    method: request.method,
    headers: request.headers,
    ...(request.body === undefined ? {} : { body: request.body }),
    redirect: "manual",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  })
  const headers = new Map<string, string>()
  for (const [name, value] of response.headers) headers.set(name.toLowerCase(), value)
  return { status: response.status, headers, body: await response.text(), via: "fetch" }
}

const dechunk = (raw: Buffer): Buffer => {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const lineEnd = raw.indexOf("\r\n", at)
    if (lineEnd < 0) break
    const size = Number.parseInt(raw.subarray(at, lineEnd).toString("latin1"), 16)
    if (!Number.isFinite(size) || size === 0) break
    parts.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size))
    at = lineEnd + 2 + size + 2
  }
  return Buffer.concat(parts)
}

/** Parses one HTTP/1.1 response from the bytes a closed connection gave. */
export const parseRawResponse = (bytes: Buffer): WireAnswer | null => {
  const head = bytes.indexOf("\r\n\r\n")
  if (head < 0) return null
  const lines = bytes.subarray(0, head).toString("latin1").split("\r\n")
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")
  if (status === null) return null
  const headers = new Map<string, string>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":")
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  const rest = bytes.subarray(head + 4)
  const body = headers.get("transfer-encoding")?.toLowerCase().includes("chunked") ? dechunk(rest) : rest
  return { status: Number(status[1]), headers, body: body.toString("utf8"), via: "raw" }
}

/**
 * Writes `bytes` to a fresh connection and collects everything until the server closes it.
 * Every raw request carries `Connection: close` (or is unparseable), so the server ends it.
 */
export const sendRaw = (port: number, bytes: Buffer): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`raw request got no closed connection within ${REQUEST_TIMEOUT_MS} ms`))
    }, REQUEST_TIMEOUT_MS)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    // A reset after the server answered and closed (it stops reading a refused request) is an end.
    socket.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      if (error.code === "ECONNRESET" || error.code === "EPIPE") resolve(Buffer.concat(chunks))
      else reject(error)
    })
    socket.on("close", () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    })
    socket.write(bytes)
  })

/** Text that only an unhandled error or a database could have written into a body. */
const LEAK_PATTERNS: ReadonlyArray<RegExp> = [
  /\n\s+at [^\n]+:\d+:\d+/, // a stack frame
  /\bat (?:async )?[\w.$<>]+ \((?:file:|node:|\/)[^)]*:\d+:\d+\)/,
  /node_modules|\.ts:\d+|\.js:\d+/,
  /syntax error at or near|SQLSTATE|violates [\w ]*constraint|duplicate key value|relation "[^"]*" does not exist/i,
  /\bpg_catalog\b|\bPostgresError\b|\bDatabaseError\b/,
  /\bWRONGTYPE\b|\bNOSCRIPT\b|ERR Error (?:running|compiling) script|user_script:\d+|\bReplyError\b/,
  /\b(?:TypeError|RangeError|ReferenceError|SyntaxError): /
]

export interface Verdict {
  readonly ok: boolean
  readonly why: string
}

const good: Verdict = { ok: true, why: "" }
const bad = (why: string): Verdict => ({ ok: false, why })

const isEnvelope = (text: string): string | null => {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return "the body is not JSON"
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "the body is not an object"
  const { error, reason_code, request_id } = body as Record<string, unknown>
  if (typeof error !== "string" || error === "") return "no `error` sentence"
  if (typeof reason_code !== "string" || !KNOWN_REASON_CODES.has(reason_code))
    return `unknown reason_code ${JSON.stringify(reason_code)}`
  if (typeof request_id !== "string" || request_id === "") return "no `request_id`"
  return null
}

/**
 * Judges one answer. `secrets` must appear in no body; `method` is the request's
 * (a HEAD answer has no body).
 */
export const judge = (answer: WireAnswer, method: string, secrets: ReadonlyArray<string>): Verdict => {
  if (answer.status >= 500) return bad(`status ${answer.status}`)
  for (const pattern of LEAK_PATTERNS)
    if (pattern.test(answer.body)) return bad(`the body matches ${pattern}: ${answer.body.slice(0, 300)}`)
  for (const secret of secrets) if (answer.body.includes(secret)) return bad("a secret is in the body")
  const fromApplication = answer.headers.has("x-request-id")
  if (!fromApplication) {
    // node's HTTP parser refused the bytes before any application code ran.
    if (answer.status !== 400 && answer.status !== 431)
      return bad(`a parser answer of status ${answer.status}`)
    if (answer.body !== "") return bad("a parser answer with a body")
    return good
  }
  if (answer.status < 400) return good
  if (method.toUpperCase() === "HEAD") return answer.body === "" ? good : bad("a HEAD answer with a body")
  const problem = isEnvelope(answer.body)
  return problem === null ? good : bad(`${problem}: ${answer.body.slice(0, 300)}`)
}
