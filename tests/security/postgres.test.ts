/** The security suite (issue 10) on Postgres: support/Suite.ts and its parts; rate limiting runs on this lane only. */
import { crossTenantPart } from "./support/CrossTenant.js"
import { fuzzPart } from "./support/Fuzz.js"
import { rateLimitPart } from "./support/RateLimit.js"
import { redactionPart } from "./support/Redaction.js"
import { revocationPart } from "./support/Revocation.js"
import { defineSecuritySuite } from "./support/Suite.js"
import { timingPart } from "./support/Timing.js"

defineSecuritySuite("postgres", [
  fuzzPart,
  crossTenantPart,
  timingPart,
  redactionPart,
  revocationPart,
  rateLimitPart
])
