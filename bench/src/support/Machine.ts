/** The machine and versions a result was measured on, for RESULTS.md. */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { cpus, loadavg, totalmem } from "node:os"
import { adminQuery, openAdminRedis } from "./Services.js"

export interface MachineInfo {
  readonly cpu: string
  readonly cores: number
  readonly memoryGiB: number
  readonly node: string
  readonly postgres: string | null
  readonly redis: string | null
  /** 1, 5 and 15 minute load averages when the scenario started and when it ended (updated as it runs). */
  loadAtStart: ReadonlyArray<number>
  loadAtEnd: ReadonlyArray<number>
}

const packageVersion = (name: string): string => {
  try {
    const url = new URL(`../../node_modules/${name}/package.json`, import.meta.url)
    return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version
  } catch {
    return "unknown"
  }
}

export const peerVersions = (): Readonly<Record<string, string>> => ({
  "pg-boss": packageVersion("pg-boss"),
  "graphile-worker": packageVersion("graphile-worker"),
  bullmq: packageVersion("bullmq"),
  pg: packageVersion("pg"),
  ioredis: packageVersion("ioredis")
})

const nproc = (): number => {
  try {
    return Number(execFileSync("nproc", { encoding: "utf8" }).trim())
  } catch {
    return cpus().length
  }
}

export const describeMachine = async (
  postgresUrl: string | null,
  redisUrl: string | null
): Promise<MachineInfo> => {
  let postgres: string | null = null
  if (postgresUrl !== null) {
    const [row] = await adminQuery<{ v: string }>(postgresUrl, "SHOW server_version").catch(() => [])
    postgres = row === undefined ? null : (Object.values(row)[0] as string)
  }
  let redis: string | null = null
  if (redisUrl !== null) {
    const client = await openAdminRedis(redisUrl)
    const info = await client.info("server")
    client.disconnect()
    redis = /redis_version:(\S+)/.exec(info)?.[1] ?? null
  }
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: nproc(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres,
    redis,
    loadAtStart: loadavg(),
    loadAtEnd: []
  }
}
