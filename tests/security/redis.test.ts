/** The security suite (issue 10) on Redis: support/Suite.ts and its parts. */
import { crossTenantPart } from "./support/CrossTenant.js"
import { fuzzPart } from "./support/Fuzz.js"
import { redactionPart } from "./support/Redaction.js"
import { revocationPart } from "./support/Revocation.js"
import { defineSecuritySuite } from "./support/Suite.js"
import { timingPart } from "./support/Timing.js"

defineSecuritySuite("redis", [fuzzPart, crossTenantPart, timingPart, redactionPart, revocationPart])
