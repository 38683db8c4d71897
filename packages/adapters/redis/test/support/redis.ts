/** Test plumbing: find the machine's Redis, give each suite its own key prefix, and clean it up. */
import { randomBytes } from "node:crypto"
import { locateService, type ServiceLocation } from "@baton/adapter-conformance"
import { Cluster, type Redis } from "ioredis"

/** Found once per test file (top-level await), so a suite can decide to skip before it is declared. */
export const findRedis = (): Promise<ServiceLocation | null> => locateService("redis")

export const uniquePrefix = (suite: string): string => `baton-test:${suite}:${randomBytes(6).toString("hex")}`

/** SCAN + DEL of every key under the prefix, on every master. */
export const dropPrefix = async (client: Redis | Cluster, prefix: string): Promise<void> => {
  const nodes = client instanceof Cluster ? client.nodes("master") : [client]
  for (const node of nodes) {
    let cursor = "0"
    do {
      const [next, found] = await node.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000)
      cursor = next
      // One DEL per key: on a cluster the keys of one batch sit in many slots.
      await Promise.all(found.map((key) => node.del(key)))
    } while (cursor !== "0")
  }
}
