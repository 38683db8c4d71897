/**
 * One process at a time per PGlite data directory: two writers would corrupt
 * it. A lock file inside the directory names its owner (pid, when that
 * process started, and a random token).
 *
 * Not an mtime-refreshed lock (proper-lockfile and the like): PGlite runs the
 * database on this process's only thread, and a long statement would delay
 * the refresh until the lock looked abandoned. Ownership is decided from the
 * owner's identity instead:
 * - created atomically (written to a temporary file, then hard-linked into place, so never seen half-written);
 * - stale when its process is gone, or when its pid now belongs to another process (a different start time),
 *   or when it names this very process but this process holds no such lock (a container restarted with
 *   the same pid);
 * - a stale lock is taken over by renaming it away first, so two starters cannot both take it.
 */
import { randomBytes } from "node:crypto"
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

/** Another live process (or this one, through another adapter) has the directory open. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number
  ) {
    super(
      `The data directory ${dataDir} is in use by process ${pid}; stop it or choose another BATON_DATA_DIR.`
    )
  }
}

/** The directory cannot be created or locked at all (permissions, a file in the way…). */
export class DataDirError extends Error {}

interface Owner {
  readonly pid: number
  /** Boot id + start time in clock ticks (Linux); empty where /proc is missing. */
  readonly started: string
  readonly token: string
}

/** The locks this process holds, by lock path. */
const held = new Set<string>()

/** When `pid` started, as a string that changes if the pid is reused; "" when unknown. */
const startedOf = (pid: number): string => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Field 22, counted after the command name (which may contain spaces, but ends with the last ")").
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
    return `${boot}/${fields[19] ?? ""}`
  } catch {
    return ""
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const readOwner = (lockPath: string): Owner | null => {
  try {
    const parsed = JSON.parse(readFileSync(lockPath, "utf8")) as Partial<Owner>
    return typeof parsed.pid === "number" &&
      typeof parsed.started === "string" &&
      typeof parsed.token === "string"
      ? (parsed as Owner)
      : null
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw error
    return null // unreadable or garbage: nobody can be holding it through this file
  }
}

const ownerIsLive = (lockPath: string, owner: Owner): boolean => {
  if (owner.pid === process.pid) return held.has(lockPath)
  if (!isAlive(owner.pid)) return false
  const started = startedOf(owner.pid)
  return owner.started === "" || started === "" || started === owner.started
}

const fsError = (dataDir: string, error: unknown): DataDirError =>
  new DataDirError(
    `Cannot create or lock the data directory ${dataDir} (${(error as NodeJS.ErrnoException).code ?? "error"}).`
  )

/** Locks `dataDir` (created when missing) for this process; returns the release function. */
export const lockDataDir = (dir: string): (() => void) => {
  const dataDir = resolve(dir)
  const lockPath = join(dataDir, "baton.lock")
  const me: Owner = {
    pid: process.pid,
    started: startedOf(process.pid),
    token: randomBytes(16).toString("hex")
  }
  const temp = `${lockPath}.${me.token}`
  try {
    mkdirSync(dataDir, { recursive: true })
    writeFileSync(temp, JSON.stringify(me))
  } catch (error) {
    throw fsError(dataDir, error)
  }
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(temp, lockPath)
        held.add(lockPath)
        return () => {
          held.delete(lockPath)
          try {
            // Only our own lock: never one another process took over.
            if (readOwner(lockPath)?.token === me.token) unlinkSync(lockPath)
          } catch {
            // Already gone: nothing to release.
          }
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw fsError(dataDir, error)
      }
      let owner: Owner | null
      try {
        owner = readOwner(lockPath)
      } catch {
        continue // released between our link and our read: try again
      }
      if (owner !== null && ownerIsLive(lockPath, owner)) throw new DataDirInUseError(dataDir, owner.pid)
      try {
        // Away under a name of our own: of two starters taking over one stale lock, only one renames it.
        renameSync(lockPath, `${lockPath}.stale.${me.token}`)
        unlinkSync(`${lockPath}.stale.${me.token}`)
      } catch {
        // Another starter moved it first; the next link attempt tells who holds it now.
      }
    }
    throw new DataDirError(`Could not lock the data directory ${dataDir}: its lock kept changing hands.`)
  } finally {
    try {
      unlinkSync(temp)
    } catch {
      // The temporary link may already be gone.
    }
  }
}
