/**
 * What the server promises to keep. Read once at start: AOF off means a
 * restart loses everything since the last RDB snapshot (or everything).
 */
import { type StorageError, storageUnavailable } from "@baton/core"
import { Effect } from "effect"
import type { Redis } from "ioredis"

export interface Persistence {
  /** Null when CONFIG is disabled (renamed away, as managed services do). */
  readonly appendonly: string | null
  readonly appendfsync: string | null
}

const readConfig = (node: Redis, name: string): Promise<string | null> =>
  node.config("GET", name).then(
    (reply) => {
      const pair = reply as ReadonlyArray<string>
      return pair.length >= 2 ? (pair[1] ?? null) : null
    },
    () => null
  )

export const readPersistence = (node: Redis): Promise<Persistence> =>
  Promise.all([readConfig(node, "appendonly"), readConfig(node, "appendfsync")]).then(
    ([appendonly, appendfsync]) => ({ appendonly, appendfsync })
  )

/**
 * Warns (or, with `requireAof`, fails) when a master runs without AOF. A
 * server whose CONFIG is disabled cannot be checked: that is a warning only.
 */
export const checkDurability = (
  nodes: ReadonlyArray<Redis>,
  requireAof: boolean,
  log: (message: string) => void
): Effect.Effect<void, StorageError> =>
  Effect.flatMap(
    Effect.promise(() => Promise.all(nodes.map(readPersistence))),
    (found) => {
      if (found.some((p) => p.appendonly === null)) {
        log(
          "baton redis: cannot read the server's persistence settings (CONFIG is disabled); durability unknown."
        )
        return Effect.void
      }
      if (found.some((p) => p.appendonly !== "yes")) {
        const message =
          "Redis runs without AOF (appendonly no): runs and events written since the last snapshot are lost if the server restarts."
        if (requireAof)
          return Effect.fail(
            storageUnavailable(`${message} requireAof is set, so the adapter does not start.`)
          )
        log(`baton redis: ${message} Set appendonly yes (and appendfsync everysec or always).`)
        return Effect.void
      }
      if (found.some((p) => p.appendfsync === "no"))
        log(
          "baton redis: appendfsync no: the OS decides when writes reach the disk; a crash may lose ~30 s of writes."
        )
      return Effect.void
    }
  )
