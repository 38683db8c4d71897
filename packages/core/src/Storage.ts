import type { Layer } from "effect"
import type { StorageError } from "./Errors.js"
import type { EventFeed } from "./ports/EventFeed.js"
import type { KeyStore } from "./ports/KeyStore.js"
import type { RunStore } from "./ports/RunStore.js"

/** The ports a storage adapter provides. */
export type StoragePorts = RunStore | EventFeed | KeyStore

/**
 * What an adapter package hands to `createEngine`: a name for logs and a
 * Layer that opens its connections (scoped: they close with the engine).
 */
export interface StorageAdapter {
  readonly name: string
  readonly layer: Layer.Layer<StoragePorts, StorageError>
}
