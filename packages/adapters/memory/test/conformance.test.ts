import { runAdapterConformance } from "@baton/adapter-conformance"
import { makeMemoryStore, memoryStorage } from "@baton/adapter-memory"

runAdapterConformance("memory", async () => {
  const store = makeMemoryStore()
  const { rawRun, rawEvents, rawIdempotency, rawKey } = store.backdoor
  return {
    adapter: memoryStorage(store),
    backdoor: {
      rawRun: async (id) => rawRun(id),
      rawEvents: async (id) => rawEvents(id),
      rawIdempotency: async (c, k) => rawIdempotency(c, k),
      rawKey: async (id) => rawKey(id)
    }
  }
})
