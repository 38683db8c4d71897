export interface Migration {
  readonly version: number
  readonly name: string
  /** Statements separated by `;`; `__SCHEMA__` stands for the quoted schema name. */
  readonly sql: string
}
