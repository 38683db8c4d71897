/**
 * The whole conformance suite against a real Redis Cluster of three masters
 * the test starts on loopback ports: every per-run script must stay in one
 * slot, and the shared indexes must stay correct across slots.
 */
import { requiredServices, runAdapterConformance } from "@baton/adapter-conformance"
import { redisBackdoor, redisStorage } from "@baton/adapter-redis"
import { Cluster } from "ioredis"
import { afterAll, describe, expect, it } from "vitest"
import { clusterToolsAvailable, type LocalCluster, startCluster } from "./support/cluster.js"
import { dropPrefix, uniquePrefix } from "./support/redis.js"

if (!clusterToolsAvailable()) {
  if (requiredServices().has("redis-cluster"))
    throw new Error("BATON_TEST_REQUIRE names redis-cluster, but redis-server / redis-cli are not on PATH.")
  describe("adapter conformance: redis cluster", () => {
    it.skip("redis-server / redis-cli not on PATH: cannot start a local Redis Cluster", () => {})
  })
} else {
  /** Every cluster this file started: stopped by the file's own afterAll, even when the adapter never opened. */
  const clusters: LocalCluster[] = []
  afterAll(async () => {
    await Promise.all(clusters.map((c) => c.stop()))
  })
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }

  describe("local redis cluster plumbing", () => {
    it("runs its servers as child processes and kills every one on stop", async () => {
      const cluster = await startCluster()
      clusters.push(cluster)
      expect(cluster.pids).toHaveLength(3)
      for (const pid of cluster.pids) expect(alive(pid)).toBe(true)
      await cluster.stop()
      for (const pid of cluster.pids) expect(alive(pid)).toBe(false)
    })
  })

  runAdapterConformance("redis cluster (3 masters)", async () => {
    const cluster = await startCluster()
    clusters.push(cluster)
    const prefix = uniquePrefix("cluster")
    const raw = new Cluster([...cluster.nodes])
    return {
      adapter: redisStorage({ cluster: cluster.nodes, prefix, log: () => {} }),
      backdoor: redisBackdoor(raw, prefix),
      close: async () => {
        await dropPrefix(raw, prefix).catch(() => {})
        await raw.quit().catch(() => {})
        await cluster.stop()
      }
    }
  })
}
