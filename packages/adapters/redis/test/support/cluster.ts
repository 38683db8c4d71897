/**
 * A throwaway Redis Cluster of three masters on loopback ports, for the
 * cluster conformance run: the machine's redis-server runs as child
 * processes of the test (never daemonized), killed by `stop()` — which the
 * test file's own afterAll calls, whatever happened to the adapter — and, as
 * a last resort, by a process "exit" guard if vitest goes away first.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
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
  /** The servers' process ids (children of this process). */
  readonly pids: ReadonlyArray<number>
  /** Kills the servers and removes their files; safe to call more than once. */
  readonly stop: () => Promise<void>
}

/** Every server still running, killed synchronously if the test process exits first. */
const running = new Set<ChildProcess>()
let guarded = false
const guardExit = () => {
  if (guarded) return
  guarded = true
  process.on("exit", () => {
    for (const child of running) child.kill("SIGKILL")
  })
}

const killed = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const startCluster = async (): Promise<LocalCluster> => {
  const dir = await mkdtemp(join(tmpdir(), "baton-redis-cluster-"))
  const ports = await freePorts(3)
  const started: ChildProcess[] = []
  guardExit()
  const stop = async () => {
    await Promise.all(started.map(killed))
    for (const child of started) running.delete(child)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) {
      const child = spawn(
        "redis-server",
        [
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
          "no",
          "--logfile",
          join(dir, `redis-${port}.log`)
        ],
        { stdio: "ignore" }
      )
      child.on("error", () => {})
      started.push(child)
      running.add(child)
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
    return {
      nodes: ports.map((port) => ({ host: "127.0.0.1", port })),
      pids: started.map((child) => child.pid ?? -1),
      stop
    }
  } catch (error) {
    await stop()
    throw error
  }
}
