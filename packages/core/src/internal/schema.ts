import { Schema } from "effect"

/** An optional field that is absent or present, never `undefined` (matches JSON and exactOptionalPropertyTypes). */
export const optional = <S extends Schema.Schema.All>(schema: S) =>
  Schema.optionalWith(schema, { exact: true })
