import { readdirSync, readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { LUA_DIR, renderLuaModule } from "../scripts/renderLuaModule.js"

describe("lua scripts", () => {
  it("the compiled module src/lua/index.ts matches the .lua files (run scripts/generate-lua.ts after an edit)", () => {
    expect(readFileSync(new URL("index.ts", LUA_DIR), "utf8")).toBe(renderLuaModule())
  })

  it("every script opens with a header naming its KEYS, ARGV and return values", () => {
    const files = readdirSync(LUA_DIR).filter((f) => f.endsWith(".lua"))
    expect(files.length).toBeGreaterThan(0)
    for (const file of files) {
      const header = readFileSync(new URL(file, LUA_DIR), "utf8").split("]]")[0] ?? ""
      expect(header, file).toMatch(/^--\[\[/)
      expect(header, file).toMatch(/KEYS\[1\]/)
      expect(header, file).toMatch(/ARGV/)
      expect(header, file).toMatch(/Returns/)
    }
  })
})
