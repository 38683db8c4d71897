/**
 * fast-check arbitraries of hostile requests to every route of SPEC §4, the
 * health routes, unknown routes and odd methods: malformed JSON, wrong types,
 * huge and deeply nested values, odd unicode, CR/LF and control bytes in
 * headers and ids, path tricks in ids, and SQL, NoSQL and Lua injection
 * strings in every field — each with a valid key, an invalid one, or none.
 *
 * A request `fetch` would refuse (bytes it will not put in a header, a
 * non-UTF-8 path, an absurd request line) is built as raw bytes instead.
 */
import fc from "fast-check"

/** The routes a request is aimed at, by name; the suite reports which ones it covered. */
export const ROUTES = [
  "GET /healthz",
  "GET /readyz",
  "POST /v1/runs",
  "GET /v1/runs",
  "GET /v1/runs/{id}",
  "GET /v1/runs/{id}/events",
  "GET /v1/runs/{id}/events/stream",
  "POST /v1/runs/{id}/signal",
  "POST /v1/runs/{id}/cancel",
  "POST /v1/api-keys",
  "GET /v1/api-keys",
  "DELETE /v1/api-keys/{key_id}",
  "unknown route",
  "odd method"
] as const
export type RouteName = (typeof ROUTES)[number]

export interface FuzzTarget {
  /** A key of the fuzz customer with every scope. */
  readonly validKey: string
  /** A run of the fuzz customer that is terminal (its stream replays and ends). */
  readonly terminalRunId: string
}

export type HostileRequest =
  | {
      readonly via: "fetch"
      readonly route: RouteName
      /** It carries the fuzz customer's valid key (the generator's `valid` auth). */
      readonly withValidKey: boolean
      readonly method: string
      readonly path: string
      readonly headers: Readonly<Record<string, string>>
      readonly body?: string
    }
  | {
      readonly via: "raw"
      readonly route: RouteName
      readonly withValidKey: boolean
      readonly method: string
      readonly bytes: Buffer
      /** Over the body limit: the server answers and closes with the body unread, which may reset the connection. */
      readonly oversize: boolean
    }

/** Injection and trick strings, stored verbatim or interpolated anywhere a string goes. */
export const INJECTIONS: ReadonlyArray<string> = [
  "' OR '1'='1",
  "'; DROP TABLE runs; --",
  "1; SELECT pg_sleep(5)--",
  '" OR ""="',
  "' UNION SELECT secret_hash FROM api_keys --",
  "$1",
  "\\x00",
  "%' AND 1=1 --",
  '{"$gt":""}',
  '{"$where":"sleep(5000)"}',
  "'; return true; var x='",
  '"]]; redis.call("FLUSHALL"); --',
  "]]..redis.call('KEYS','*')..[[",
  "*\r\n$8\r\nFLUSHALL\r\n",
  "KEYS *",
  "../../../../etc/passwd",
  "..%2f..%2f..%2fetc%2fpasswd",
  "%2e%2e/%2e%2e/",
  "run_../../api-keys",
  "run_%00",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a log-injection string, meant literally
  "${jndi:ldap://127.0.0.1/a}",
  "{{7*7}}",
  "<script>alert(1)</script>",
  "\u0000",
  "\u202e\u0041\u200b\ufeff",
  "\ud800",
  "\udfff\ud800",
  "𝕳𝖊𝖑𝖑𝖔 🏳️‍🌈 ﷽",
  "__proto__",
  "constructor",
  "key_AAAAAAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
  "Bearer abcdefghijklmnop",
  "-1",
  "9999999999999999999999999",
  "1e309",
  "NaN",
  "null",
  "true",
  ""
]

const injection = fc.constantFrom(...INJECTIONS)

/** Strings: injections, any unicode (lone surrogates included), and a mix of both. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: injection },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  { weight: 1, arbitrary: fc.tuple(injection, fc.string({ maxLength: 10 })).map(([a, b]) => `${a}${b}`) },
  { weight: 1, arbitrary: fc.integer({ min: 300, max: 12_000 }).map((n) => "A".repeat(n)) }
)

/** Arrays or objects nested `depth` deep (up to far past any sane limit). */
const deepJsonText = fc
  .record({ depth: fc.integer({ min: 50, max: 60_000 }), object: fc.boolean() })
  .map(({ depth, object }) =>
    object ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}` : `${"[".repeat(depth)}${"]".repeat(depth)}`
  )

/** JSON values of every type, with hostile strings, big numbers and odd keys. */
export const hostileJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    hostileString,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, -0, 1e308, -1e308, 5e-324),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(
      fc.oneof(hostileString, fc.constantFrom("$gt", "$where", "__proto__", "password")),
      tie("value"),
      {
        maxKeys: 4
      }
    )
  )
})).value

/** Body text: JSON of hostile values, or text that is not JSON at all. */
const malformedJson = fc.oneof(
  fc.constantFrom(
    "{",
    '{"input":',
    '{"input":1,}',
    "{'input':1}",
    '{"input":NaN}',
    '{"input":Infinity}',
    '{"input":1e999999}',
    '\ufeff{"input":1}',
    '{"input":1}{"input":2}',
    '{"input":"\\ud800"}',
    '{"input":"\\u0000"}',
    "[]",
    "null",
    "0",
    '"string"',
    "undefined",
    '{"__proto__":{"admin":true},"input":1}',
    '{"constructor":{"prototype":{"x":1}}}'
  ),
  fc.string({ unit: "binary", maxLength: 60 }),
  deepJsonText
)

const jsonText = (value: unknown): string => JSON.stringify(value) ?? "null"

/** A body for a route that takes JSON: a well-formed object with hostile fields, any JSON, or not JSON. */
const bodyOf = (fields: ReadonlyArray<string>): fc.Arbitrary<string> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .dictionary(fc.constantFrom(...fields), hostileJson, { maxKeys: fields.length })
        .map(jsonText)
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ key: fc.constantFrom(...fields), value: deepJsonText })
        .map(({ key, value }) => `{"${key}":${value}}`)
    },
    { weight: 2, arbitrary: hostileJson.map(jsonText) },
    { weight: 2, arbitrary: malformedJson }
  )

/**
 * Over the 1 MiB body limit: sent raw only. The server answers 413 and stops reading, so the
 * upload fails with ECONNRESET, which `fetch` reports as a failure even though an answer came.
 */
const OVERSIZE_BODY = Buffer.from(`{"input":"${"x".repeat(1024 * 1024 + 10)}"}`)

const RUN_FIELDS = ["input", "metadata", "handler", "limits", "status", "id", "customer_id", "extra"]
const SIGNAL_FIELDS = ["action", "input", "comment", "reason"]
const KEY_FIELDS = ["scopes", "name", "customer_id", "expires_at", "key_id", "secret_hash"]

/** Header values `fetch` sends: Latin-1 without control characters. */
const fetchableHeader = hostileString.map((s) => s.replace(/[^\x20-\x7e\xa0-\xff]/g, "").slice(0, 4000))

const pathSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: hostileString.map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, "?"))) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "run_00000000000000000000000000",
      "run_%2e%2e",
      "..%2F..%2Fapi-keys",
      "%2e%2e",
      ".",
      "%00",
      "%0d%0aX-Injected:%201",
      "%E2%80%AE",
      "%FF%FE",
      "%C0%AE%C0%AE",
      "run_1%27%20OR%20%271%27%3D%271",
      "%7B%22%24gt%22%3A%22%22%7D",
      "key_AAAAAAAAAAAAAAAAAAAAAAAA",
      "*",
      "a".repeat(5000)
    )
  },
  {
    weight: 1,
    arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 30 }).map(encodeURIComponent)
  }
)

const queryString: fc.Arbitrary<string> = fc
  .array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom(
          "status",
          "handler",
          "limit",
          "cursor",
          "after_seq",
          "created_after",
          "created_before"
        ),
        fc.constantFrom(
          "metadata[a]",
          "metadata[$gt]",
          "metadata[__proto__]",
          "metadata[]",
          "metadata[a][b]"
        ),
        hostileString
      ),
      hostileString
    ),
    { maxLength: 4 }
  )
  .map((pairs) => {
    const query = pairs
      .map(
        ([k, v]) =>
          `${encodeURIComponent(k.replace(/[\ud800-\udfff]/g, "?"))}=${encodeURIComponent(v.replace(/[\ud800-\udfff]/g, "?"))}`
      )
      .join("&")
    return query === "" ? "" : `?${query}`
  })

type Auth = { kind: "valid" } | { kind: "none" } | { kind: "value"; value: string }

const authArb: fc.Arbitrary<Auth> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Auth>({ kind: "valid" }) },
  { weight: 1, arbitrary: fc.constant<Auth>({ kind: "none" }) },
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        fc.constantFrom(
          "Bearer ",
          "Bearer key_AAAAAAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
          "Basic YWRtaW46YWRtaW4=",
          "Bearer key_a:b",
          "Bearer key_AAAAAAAA:' OR '1'='1",
          "bearer  key_x y",
          `Bearer key_${"A".repeat(64)}:${"B".repeat(129)}`
        ),
        fetchableHeader.map((s) => `Bearer ${s}`),
        fetchableHeader
      )
      .map((value): Auth => ({ kind: "value", value }))
  }
)

interface RouteShape {
  readonly route: RouteName
  readonly method: string
  /** Built from a path segment (an id) and a query string. */
  readonly path: (id: string, query: string) => string
  readonly body?: fc.Arbitrary<string>
}

const SHAPES: ReadonlyArray<RouteShape> = [
  { route: "GET /healthz", method: "GET", path: (_, q) => `/healthz${q}` },
  { route: "GET /readyz", method: "GET", path: (_, q) => `/readyz${q}` },
  { route: "POST /v1/runs", method: "POST", path: (_, q) => `/v1/runs${q}`, body: bodyOf(RUN_FIELDS) },
  { route: "GET /v1/runs", method: "GET", path: (_, q) => `/v1/runs${q}` },
  { route: "GET /v1/runs/{id}", method: "GET", path: (id, q) => `/v1/runs/${id}${q}` },
  { route: "GET /v1/runs/{id}/events", method: "GET", path: (id, q) => `/v1/runs/${id}/events${q}` },
  {
    route: "GET /v1/runs/{id}/events/stream",
    method: "GET",
    path: (id, q) => `/v1/runs/${id}/events/stream${q}`
  },
  {
    route: "POST /v1/runs/{id}/signal",
    method: "POST",
    path: (id, q) => `/v1/runs/${id}/signal${q}`,
    body: bodyOf(SIGNAL_FIELDS)
  },
  {
    route: "POST /v1/runs/{id}/cancel",
    method: "POST",
    path: (id, q) => `/v1/runs/${id}/cancel${q}`,
    body: bodyOf(SIGNAL_FIELDS)
  },
  {
    route: "POST /v1/api-keys",
    method: "POST",
    path: (_, q) => `/v1/api-keys${q}`,
    body: bodyOf(KEY_FIELDS)
  },
  { route: "GET /v1/api-keys", method: "GET", path: (_, q) => `/v1/api-keys${q}` },
  { route: "DELETE /v1/api-keys/{key_id}", method: "DELETE", path: (id, q) => `/v1/api-keys/${id}${q}` },
  { route: "unknown route", method: "GET", path: (id, q) => `/v1/${id}${q}` },
  { route: "unknown route", method: "POST", path: (id, q) => `/${id}/v1/runs${q}`, body: bodyOf(RUN_FIELDS) },
  { route: "unknown route", method: "GET", path: (id, q) => `/v1/runs/${id}/events/stream/extra${q}` },
  { route: "unknown route", method: "GET", path: (_, q) => `/v1/runs/../api-keys${q}` },
  { route: "unknown route", method: "GET", path: (_, q) => `/v2/runs${q}` }
]

const ODD_METHODS = ["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "POST", "GET"]
/** Methods `fetch` refuses to send, or that are not methods at all: raw only. */
const RAW_ONLY_METHODS = ["TRACE", "CONNECT", "PROPFIND", "GE T", "get", "G\u0000T", "X".repeat(300), ""]

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "application/vnd.api+json",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/json\u00ff",
  ""
]

const authHeader = (auth: Auth, target: FuzzTarget): Record<string, string> =>
  auth.kind === "valid"
    ? { authorization: `Bearer ${target.validKey}` }
    : auth.kind === "none"
      ? {}
      : { authorization: auth.value }

const fetchRequest = (target: FuzzTarget): fc.Arbitrary<HostileRequest> =>
  fc
    .record({
      shapeIndex: fc.nat({ max: SHAPES.length - 1 }),
      id: fc.oneof(
        { weight: 2, arbitrary: pathSegment },
        { weight: 1, arbitrary: fc.constant(target.terminalRunId) }
      ),
      query: fc.oneof(fc.constant(""), queryString),
      auth: authArb,
      contentType: fc.option(fc.constantFrom(...CONTENT_TYPES), { nil: undefined }),
      idempotencyKey: fc.option(fetchableHeader, { nil: undefined }),
      // fast-check's `freq` is the odds of nil: a hostile Last-Event-ID on half the requests (one would
      // refuse most streams), an odd method on one in eight, so each route also gets valid requests.
      lastEventId: fc.option(fetchableHeader, { freq: 2, nil: undefined }),
      requestId: fc.option(fetchableHeader, { nil: undefined }),
      oddMethod: fc.oneof(
        { weight: 7, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.constantFrom(...ODD_METHODS) }
      ),
      seed: fc.nat()
    })
    .chain((r) => {
      const shape = SHAPES[r.shapeIndex]!
      const body = shape.body ?? fc.constant<string | undefined>(undefined)
      return body.map((text): HostileRequest => {
        const method = r.oddMethod ?? shape.method
        const headers: Record<string, string> = {
          ...authHeader(r.auth, target),
          ...(r.contentType === undefined
            ? { "content-type": "application/json" }
            : { "content-type": r.contentType.replace(/[^\x20-\xff]/g, "") }),
          ...(r.idempotencyKey === undefined
            ? { "idempotency-key": `fuzz-${r.seed}` }
            : { "idempotency-key": r.idempotencyKey }),
          ...(r.lastEventId === undefined ? {} : { "last-event-id": r.lastEventId }),
          ...(r.requestId === undefined ? {} : { "x-request-id": r.requestId })
        }
        const path = shape.path(r.id, r.query)
        // Past node's 16 KiB header limit the server answers 431 unread; a body would then fail to upload.
        const headBytes = path.length + Object.values(headers).reduce((n, v) => n + v.length, 0)
        const hasBody = text !== undefined && method !== "GET" && method !== "HEAD" && headBytes < 12_000
        return {
          via: "fetch",
          withValidKey: r.auth.kind === "valid",
          route: r.oddMethod !== undefined && r.oddMethod !== shape.method ? "odd method" : shape.route,
          method,
          path,
          headers,
          ...(hasBody ? { body: text } : {})
        }
      })
    })

/** Header lines with bytes `fetch` refuses: CR/LF injection, NUL and other control bytes, non-Latin-1. */
const rawHeaderValue: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .constantFrom(
      "x\r\nX-Injected: 1",
      "x\nX-Injected: 1",
      "x\rY",
      "a\u0000b",
      "\u0001\u0002\u0007\u001b[31m",
      " \t ",
      "x".repeat(20_000)
    )
    .map((s) => Buffer.from(s, "latin1")),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a)),
  hostileString.map((s) => Buffer.from(s, "utf8"))
)

const rawRequestLine: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .constantFrom(
      "GET",
      "GET /healthz",
      "GET /healthz HTTP/2.0",
      "GET /healthz HTTP/0.9",
      "GET  /healthz  HTTP/1.1",
      "GET http://127.0.0.1/healthz HTTP/1.1",
      "GET * HTTP/1.1",
      "GET /v1/runs/run_x\u0000 HTTP/1.1",
      "GET /v1/runs/run x HTTP/1.1",
      "\u0016\u0003\u0001\u0002\u0000\u0001",
      "PRI * HTTP/2.0",
      `GET /${"a".repeat(70_000)} HTTP/1.1`
    )
    .map((s) => Buffer.from(s, "latin1")),
  fc.uint8Array({ minLength: 1, maxLength: 60 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.constantFrom(...RAW_ONLY_METHODS, ...ODD_METHODS), pathSegment)
    .map(([m, id]) => Buffer.from(`${m} /v1/runs/${id} HTTP/1.1`, "latin1"))
)

const rawRequest = (target: FuzzTarget): fc.Arbitrary<HostileRequest> =>
  fc
    .record({
      shapeIndex: fc.nat({ max: SHAPES.length - 1 }),
      kind: fc.constantFrom("header", "path", "line", "body", "method", "oversize"),
      headerName: fc.constantFrom(
        "authorization",
        "idempotency-key",
        "x-request-id",
        "last-event-id",
        "content-type",
        "x-hostile"
      ),
      headerValue: rawHeaderValue,
      pathBytes: fc.uint8Array({ minLength: 1, maxLength: 20 }),
      line: rawRequestLine,
      body: fc.uint8Array({ maxLength: 200 }),
      method: fc.constantFrom(...RAW_ONLY_METHODS),
      auth: authArb
    })
    .map((r): HostileRequest => {
      const shape = SHAPES[r.shapeIndex]!
      let method = shape.method
      let line: Buffer = Buffer.from(`${method} ${shape.path("run_doesnotexist", "")} HTTP/1.1`, "latin1")
      const headers: Buffer[] = [Buffer.from("Host: 127.0.0.1\r\nConnection: close\r\n", "latin1")]
      const auth = authHeader(r.auth, target).authorization
      if (auth !== undefined && !(r.kind === "header" && r.headerName === "authorization"))
        headers.push(Buffer.from(`Authorization: ${auth}\r\n`, "latin1"))
      let body = Buffer.from('{"input":1}')
      let route: RouteName = shape.route
      switch (r.kind) {
        case "header":
          headers.push(Buffer.concat([Buffer.from(`${r.headerName}: `), r.headerValue, Buffer.from("\r\n")]))
          break
        case "path":
          line = Buffer.concat([
            Buffer.from(`${method} ${shape.path("", "").replace(/\/$/, "")}/`, "latin1"),
            Buffer.from(r.pathBytes),
            Buffer.from(" HTTP/1.1", "latin1")
          ])
          break
        case "line":
          line = Buffer.from(r.line)
          method = r.line.toString("latin1").split(" ")[0] ?? ""
          route = "odd method"
          break
        case "body":
          body = Buffer.concat([Buffer.from('{"input":"'), Buffer.from(r.body), Buffer.from('"}')])
          break
        case "oversize":
          body = OVERSIZE_BODY
          break
        case "method":
          method = r.method
          line = Buffer.from(`${method} ${shape.path("run_doesnotexist", "")} HTTP/1.1`, "latin1")
          route = "odd method"
          break
      }
      const bytes = Buffer.concat([
        line,
        Buffer.from("\r\n"),
        ...headers,
        Buffer.from(`Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, "latin1"),
        body
      ])
      const withValidKey =
        r.auth.kind === "valid" && !(r.kind === "header" && r.headerName === "authorization")
      return { via: "raw", route, withValidKey, method, bytes, oversize: r.kind === "oversize" }
    })

/** One hostile request: four in five through `fetch`, one in five as raw bytes. */
export const hostileRequest = (target: FuzzTarget): fc.Arbitrary<HostileRequest> =>
  fc.oneof({ weight: 4, arbitrary: fetchRequest(target) }, { weight: 1, arbitrary: rawRequest(target) })
