/**
 * What the server promises to keep. Read once at start: AOF off means a
 * restart loses everything since the last RDB snapshot (or everything).
 */
import { type StorageError, storageUnavailable } from "@baton/core"
import { Effect } from "effect"
import type { Redis } from "ioredis"

export interface Persistence {
  /**
   * "yes" / "no"; from CONFIG GET, else from INFO persistence (`aof_enabled:`) when
   * CONFIG is disabled (renamed away, as managed services do); null when neither answers.
   */
  readonly appendonly: string | null
  /** Null when CONFIG is disabled (INFO does not tell). */
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

/** `aof_enabled:1` of INFO persistence as "yes" / "no"; null when INFO is unavailable too. */
const readInfo = (node: Redis): Promise<string | null> =>
  node.info("persistence").then(
    (text) => {
      const found = /^aof_enabled:(\d)/m.exec(String(text))?.[1]
      return found === undefined ? null : found === "1" ? "yes" : "no"
    },
    () => null
  )

export const readPersistence = async (node: Redis): Promise<Persistence> => {
  const [appendonly, appendfsync] = await Promise.all([
    readConfig(node, "appendonly"),
    readConfig(node, "appendfsync")
  ])
  return { appendonly: appendonly ?? (await readInfo(node)), appendfsync }
}

/**
 * Warns (or, with `requireAof`, fails) when a master runs without AOF. When
 * neither CONFIG nor INFO tells, durability is unknown: a warning, or with
 * `requireAof` a start failure (it cannot be proven).
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
        const message =
          "Cannot read the server's persistence settings (CONFIG and INFO persistence are unavailable); durability unknown."
        if (requireAof)
          return Effect.fail(
            storageUnavailable(`${message} requireAof is set, so the adapter does not start.`)
          )
        log(`baton redis: ${message}`)
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
