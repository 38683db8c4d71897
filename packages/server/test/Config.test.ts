import { inspect } from "node:util"
import { describe, expect, it } from "vitest"
import { ConfigError, loadConfig, Secret } from "../src/Config.js"

const KEY = "key_bootstrap0001:s3cr3t-s3cr3t-s3cr3t-abcdef"

const failure = (env: NodeJS.ProcessEnv): ConfigError => {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error("expected a ConfigError")
}

describe("loadConfig", () => {
  it("has defaults for everything", () => {
    expect(loadConfig({})).toEqual({
      port: 3000,
      host: "0.0.0.0",
      storage: "memory",
      bootstrapKey: null,
      workerConcurrency: 10,
      corsOrigins: [],
      logLevel: "info",
      shutdownGraceMs: 10_000
    })
  })

  it("treats blank values as unset", () => {
    expect(loadConfig({ PORT: "", HOST: " ", BATON_BOOTSTRAP_KEY: "" })).toMatchObject({
      port: 3000,
      host: "0.0.0.0",
      bootstrapKey: null
    })
  })

  it("reads every variable", () => {
    const config = loadConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      BATON_STORAGE: "MEMORY",
      BATON_BOOTSTRAP_KEY: KEY,
      BATON_WORKER_CONCURRENCY: "0",
      BATON_CORS_ORIGINS: "https://app.example.com, http://localhost:5173/,https://app.example.com",
      BATON_LOG_LEVEL: "warn"
    })
    expect(config).toMatchObject({
      port: 0,
      host: "127.0.0.1",
      storage: "memory",
      workerConcurrency: 0,
      corsOrigins: ["https://app.example.com", "http://localhost:5173"],
      logLevel: "warn"
    })
    expect(config.bootstrapKey?.reveal()).toBe(KEY)
  })

  it.each([
    ["PORT", "abc"],
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["HOST", "local host"],
    ["BATON_STORAGE", "sqlite"],
    ["BATON_WORKER_CONCURRENCY", "-1"],
    ["BATON_WORKER_CONCURRENCY", "ten"],
    ["BATON_WORKER_CONCURRENCY", "1001"],
    ["BATON_CORS_ORIGINS", "app.example.com"],
    ["BATON_CORS_ORIGINS", "https://app.example.com/path"],
    ["BATON_CORS_ORIGINS", "ftp://files.example.com"],
    ["BATON_LOG_LEVEL", "verbose"]
  ])("names %s in the error for %j", (variable, value) => {
    const error = failure({ [variable]: value })
    expect(error.variable).toBe(variable)
    expect(error.message).toContain(variable)
    expect(error.message).toMatch(/must be/)
  })

  it.each(["pglite", "postgres", "redis", "mongo"])("says BATON_STORAGE=%s is not available yet", (name) => {
    const error = failure({ BATON_STORAGE: name })
    expect(error.variable).toBe("BATON_STORAGE")
    expect(error.message).toContain(`BATON_STORAGE=${name} is not available yet in this build`)
    expect(error.message).toContain("memory (the default today)")
  })

  it.each([
    "no-colon-at-all",
    "key_short:s3cr3t-s3cr3t-s3cr3t",
    "key_bootstrap0001:short",
    "key_bootstrap0001:has spaces in the secret part",
    "bootstrap0001:s3cr3t-s3cr3t-s3cr3t-abcdef"
  ])("rejects a malformed BATON_BOOTSTRAP_KEY without echoing it (%#)", (value) => {
    const error = failure({ BATON_BOOTSTRAP_KEY: value })
    expect(error.variable).toBe("BATON_BOOTSTRAP_KEY")
    expect(error.message).toContain("BATON_BOOTSTRAP_KEY must be key_id:secret")
    expect(error.message).not.toContain(value)
    const [, secret = value] = value.split(":")
    expect(error.message).not.toContain(secret)
    expect(String(error.stack)).not.toContain(secret)
  })

  it("reports every bad variable at once", () => {
    const error = failure({ PORT: "x", BATON_WORKER_CONCURRENCY: "y", BATON_BOOTSTRAP_KEY: "key_x:nope" })
    expect(error.problems.map((p) => p.variable)).toEqual([
      "PORT",
      "BATON_BOOTSTRAP_KEY",
      "BATON_WORKER_CONCURRENCY"
    ])
    expect(error.message).not.toContain("nope")
  })

  it("masks credentials in a URL it echoes", () => {
    const error = failure({ BATON_STORAGE: "postgres://admin:hunter2@db:5432/baton" })
    expect(error.variable).toBe("BATON_STORAGE")
    expect(error.message).not.toContain("hunter2")
  })

  it("never shows the bootstrap key when the config is logged or serialised", () => {
    const config = loadConfig({ BATON_BOOTSTRAP_KEY: KEY })
    const secret = KEY.split(":")[1] ?? ""
    expect(inspect(config)).not.toContain(secret)
    expect(JSON.stringify(config)).not.toContain(secret)
    expect(`${config.bootstrapKey}`).toBe("[REDACTED]")
    expect(config.bootstrapKey).toBeInstanceOf(Secret)
  })
})
