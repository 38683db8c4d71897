import { Effect, ParseResult, Schema } from "effect"
import { type ErrorDetail, type ValidationError, validationError } from "../Errors.js"
import { MAX_JSON_DEPTH, nestsDeeperThan } from "../Json.js"
import { DEFAULT_REDACTION_POLICY, redactJson } from "../Redaction.js"

/** Decodes unknown input with a schema; failures become a VALIDATION_FAILED error listing each problem. */
export const decodeInput =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (input: unknown): Effect.Effect<A, ValidationError> =>
    // A request is one object around JSON values of MAX_JSON_DEPTH levels; anything deeper is
    // refused before the schema (whose error formatting recurses) sees it.
    nestsDeeperThan(input, MAX_JSON_DEPTH + 1)
      ? Effect.fail(
          validationError([{ path: "(body)", message: `nests deeper than ${MAX_JSON_DEPTH} levels` }])
        )
      : Effect.mapError(
          Schema.decodeUnknown(schema, { errors: "all", onExcessProperty: "error" })(input),
          (error) => validationError(toDetails(error))
        )

/** At most this many problems are listed, each message at most MAX_DETAIL_CHARS long. */
export const MAX_DETAILS = 20
export const MAX_DETAIL_CHARS = 300

// Schema messages quote the offending value ("actual …"): a megabyte of it must not come back in the
// answer (or reach a proxy's log) once per problem, nor a credential in it (redacted whole, before
// the cut, so no part of one survives). The default policy: an error echoes for every embedder.
const bounded = (text: string): string => {
  const safe = redactJson(text, DEFAULT_REDACTION_POLICY).value
  return safe.length <= MAX_DETAIL_CHARS ? safe : `${safe.slice(0, MAX_DETAIL_CHARS - 1)}…`
}

const toDetails = (error: ParseResult.ParseError): ReadonlyArray<ErrorDetail> =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .slice(0, MAX_DETAILS)
    .map((issue) => ({
      path: bounded(issue.path.length === 0 ? "(body)" : issue.path.map(String).join(".")),
      message: bounded(issue.message)
    }))
