import { Effect, ParseResult, Schema } from "effect"
import { type ErrorDetail, type ValidationError, validationError } from "../Errors.js"

/** Decodes unknown input with a schema; failures become a VALIDATION_FAILED error listing each problem. */
export const decodeInput =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (input: unknown): Effect.Effect<A, ValidationError> =>
    Effect.mapError(
      Schema.decodeUnknown(schema, { errors: "all", onExcessProperty: "error" })(input),
      (error) => validationError(toDetails(error))
    )

const toDetails = (error: ParseResult.ParseError): ReadonlyArray<ErrorDetail> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: issue.path.length === 0 ? "(body)" : issue.path.map(String).join("."),
    message: issue.message
  }))
