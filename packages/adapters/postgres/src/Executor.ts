/**
 * The seam between Baton's SQL and the thing that runs it: a `pg.Pool` against
 * a Postgres server, or PGlite in this process. Every statement the adapter
 * sends goes through here, so both run exactly the same SQL.
 */

/** A parameterised statement. `name` lets a server connection prepare it once and reuse the plan. */
export interface Statement {
  readonly name: string
  readonly text: string
}

export type Row = Record<string, unknown>

export interface Queryable {
  query<R extends Row = Row>(statement: Statement, params: ReadonlyArray<unknown>): Promise<ReadonlyArray<R>>
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>
}

export interface ListenHandlers {
  readonly onNotification: (payload: string) => void
  /** The listening connection broke: notifications may be lost until `onListening`. */
  readonly onLost: () => void
  /** Listening again after a loss: whatever happened meanwhile must be re-read. */
  readonly onListening: () => void
}

export interface SqlExecutor extends Queryable {
  /** Runs `body` as one transaction on one connection: COMMIT when it resolves, ROLLBACK when it throws. */
  transaction<A>(body: (tx: Queryable) => Promise<A>): Promise<A>
  /**
   * LISTENs on `channel` over a connection of its own, reconnecting after a
   * loss. Resolves once listening; the returned function stops.
   */
  listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>>
  close(): Promise<void>
}

/** Names a statement after its text, so two texts never share a prepared name. */
export const statement = (label: string, text: string): Statement => {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return { name: `baton_${label}_${(hash >>> 0).toString(36)}`, text }
}
