/**
 * Compiles `src/migrations/NNNN_name.sql` into `src/migrations/index.ts`, so the
 * package never reads files at run time. Run after editing a migration:
 *
 *   pnpm --filter @baton/adapter-postgres migrations:compile
 *
 * A test fails when the compiled module and the .sql files disagree.
 */
import { writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { renderMigrationsModule } from "./renderMigrations.js"

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "migrations")
writeFileSync(join(dir, "index.ts"), renderMigrationsModule(dir))
console.log(`wrote ${join(dir, "index.ts")}`)
