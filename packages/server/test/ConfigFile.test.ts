import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { ConfigError } from "../src/Config.js"
import { CONFIG_FILE, loadConfigFile } from "../src/ConfigFile.js"

const dirs: string[] = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

const dirWith = async (source: string | null): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), "baton-config-"))
  dirs.push(dir)
  if (source !== null) await writeFile(join(dir, CONFIG_FILE), source)
  return dir
}

describe("loadConfigFile", () => {
  it("is null when the directory has no baton.config.ts", async () => {
    expect(await loadConfigFile(await dirWith(null))).toBeNull()
  })

  it("loads handlers by name", async () => {
    const dir = await dirWith(
      "export default { handlers: { shout: (run: { input: unknown }) => String(run.input).toUpperCase() } }\n"
    )
    const file = await loadConfigFile(dir)
    expect(Object.keys(file?.handlers ?? {})).toEqual(["shout"])
    expect(file?.storage).toBeUndefined()
  })

  it.each([
    ["no default export", "export const handlers = {}\n"],
    ["handlers that are not functions", "export default { handlers: { shout: 42 } }\n"],
    ["a storage that is not an adapter", 'export default { storage: "postgres" }\n']
  ])("rejects %s with a ConfigError naming the file", async (_label, source) => {
    const error = await loadConfigFile(await dirWith(source)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect(String((error as ConfigError).message)).toContain(CONFIG_FILE)
  })
})
