import { EventFeed, KeyStore, RunStore, type StorageAdapter } from "@baton/core"
import { Layer } from "effect"
import { type MemoryBackdoor, type MemoryStore, makeMemoryStore } from "./MemoryStore.js"

export { type MemoryBackdoor, type MemoryStore, makeMemoryStore }

/**
 * In-process storage: fast, complete, and gone when the process exits. Every
 * engine built from the same adapter value shares one store (like several
 * processes sharing one database).
 */
export const memoryStorage = (
  store: MemoryStore = makeMemoryStore()
): StorageAdapter & { readonly store: MemoryStore } => ({
  name: "memory",
  store,
  layer: Layer.mergeAll(
    Layer.succeed(RunStore, RunStore.makeEncoded(store.runStore)),
    Layer.succeed(EventFeed, store.eventFeed),
    Layer.succeed(KeyStore, KeyStore.makeEncoded(store.keyStore))
  )
})
