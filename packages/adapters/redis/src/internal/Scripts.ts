/**
 * The Lua scripts as client commands. ioredis sends each by EVALSHA and, on
 * NOSCRIPT (a restarted server, a failover, SCRIPT FLUSH), once more with its
 * source, so no script is ever lost.
 */
import type { Cluster, Redis } from "ioredis"
import * as Lua from "../lua/index.js"

export type RedisClient = Redis | Cluster

type Arg = string | number
type Call<R> = (...keysThenArgs: ReadonlyArray<Arg>) => Promise<R>

export interface Scripts {
  readonly createRun: Call<number>
  readonly append: Call<ReadonlyArray<string | number | null>>
  readonly renewLease: Call<ReadonlyArray<string>>
  readonly claimIdempotencyKey: Call<ReadonlyArray<string>>
  readonly confirmIdempotencyKey: Call<number>
  readonly releaseIdempotencyKey: Call<number>
  readonly voidRunId: Call<string>
  readonly markExpiring: Call<number>
  readonly dueExpiring: Call<ReadonlyArray<string>>
  readonly hintIndex: Call<number>
  readonly settleIndex: Call<number>
  readonly insertKey: Call<number>
  readonly revokeKey: Call<ReadonlyArray<string>>
}

const DEFINITIONS: Readonly<Record<keyof Scripts, { readonly lua: string; readonly keys: number }>> = {
  createRun: { lua: Lua.createRun, keys: 3 },
  append: { lua: Lua.append, keys: 2 },
  renewLease: { lua: Lua.renewLease, keys: 1 },
  claimIdempotencyKey: { lua: Lua.claimIdempotencyKey, keys: 1 },
  confirmIdempotencyKey: { lua: Lua.confirmIdempotencyKey, keys: 1 },
  releaseIdempotencyKey: { lua: Lua.releaseIdempotencyKey, keys: 1 },
  voidRunId: { lua: Lua.voidRunId, keys: 2 },
  markExpiring: { lua: Lua.markExpiring, keys: 1 },
  dueExpiring: { lua: Lua.dueExpiring, keys: 1 },
  hintIndex: { lua: Lua.hintIndex, keys: 2 },
  settleIndex: { lua: Lua.settleIndex, keys: 2 },
  insertKey: { lua: Lua.insertKey, keys: 1 },
  revokeKey: { lua: Lua.revokeKey, keys: 1 }
}

const commandName = (name: string) => `baton_${name}`

/** Registers every script on the client and returns typed callers. */
export const defineScripts = (client: RedisClient): Scripts => {
  const callable = client as unknown as Record<string, (...args: Arg[]) => Promise<unknown>>
  const out: Partial<Record<keyof Scripts, Call<unknown>>> = {}
  for (const [name, def] of Object.entries(DEFINITIONS) as Array<
    [keyof Scripts, { lua: string; keys: number }]
  >) {
    const command = commandName(name)
    client.defineCommand(command, { numberOfKeys: def.keys, lua: def.lua })
    out[name] = (...args) => callable[command]!.apply(client, [...args])
  }
  return out as Scripts
}
