/** Writes src/lua/index.ts from src/lua/*.lua: `pnpm tsx packages/adapters/redis/scripts/generate-lua.ts`. */
import { writeFileSync } from "node:fs"
import { LUA_DIR, renderLuaModule } from "./renderLuaModule.js"

writeFileSync(new URL("index.ts", LUA_DIR), renderLuaModule())
