/**
 * A throwaway Redis Cluster of three masters on loopback ports, for the
 * cluster conformance run: started with the machine's redis-server and
 * redis-cli, stopped (shutdown nosave) and its files removed afterwards.
 */
import { execFile, spawnSync } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { Redis } from "ioredis"

const run = promisify(execFile)

/** True when both binaries answer `--version`. */
export const clusterToolsAvailable = (): boolean =>
  ["redis-server", "redis-cli"].every(
    (bin) => spawnSync(bin, ["--version"], { stdio: "ignore" }).status === 0
  )

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/** Ports P whose cluster bus port P + 10000 is free too. */
const freePorts = async (count: number): Promise<number[]> => {
  const ports: number[] = []
  for (let tries = 0; ports.length < count && tries < 500; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    if (ports.includes(port)) continue
    if ((await portIsFree(port)) && (await portIsFree(port + 10_000))) ports.push(port)
  }
  if (ports.length < count) throw new Error("no free loopback ports for a Redis Cluster")
  return ports
}

export interface LocalCluster {
  readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>
  readonly stop: () => Promise<void>
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const startCluster = async (): Promise<LocalCluster> => {
  const dir = await mkdtemp(join(tmpdir(), "baton-redis-cluster-"))
  const ports = await freePorts(3)
  const started: number[] = []
  const stop = async () => {
    await Promise.all(
      started.map((port) =>
        run("redis-cli", ["-p", String(port), "shutdown", "nosave"]).catch(() => {
          // Already gone.
        })
      )
    )
    await rm(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) {
      await run("redis-server", [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "yes",
        "--logfile",
        join(dir, `redis-${port}.log`)
      ])
      started.push(port)
    }
    for (const port of ports) {
      const deadline = Date.now() + 10_000
      while (
        (await run("redis-cli", ["-p", String(port), "ping"]).catch(() => ({ stdout: "" }))).stdout.trim() !==
        "PONG"
      ) {
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`)
        await pause(50)
      }
    }
    await run("redis-cli", [
      "--cluster",
      "create",
      ...ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes"
    ])
    for (const port of ports) {
      const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true })
      try {
        await probe.connect()
        const deadline = Date.now() + 20_000
        while (!String(await probe.cluster("INFO")).includes("cluster_state:ok")) {
          if (Date.now() > deadline) throw new Error("the Redis Cluster did not reach cluster_state:ok")
          await pause(100)
        }
      } finally {
        probe.disconnect()
      }
    }
    return { nodes: ports.map((port) => ({ host: "127.0.0.1", port })), stop }
  } catch (error) {
    await stop()
    throw error
  }
}
